import ArgumentParser
import CMAuth
import CMConfig
import Foundation

struct Web: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The web console's accounts (cm-webd).",
        subcommands: [Passwd.self, Rm.self])

    /// Where the users file is: --users-file, else webd.toml's users_file.
    struct UsersFileOptions: ParsableArguments {
        @Option(name: .long, help: ArgumentHelp("Directory holding webd.toml.", valueName: "dir"))
        var configDir: String = "/etc/clustermaker"

        @Option(name: .long, help: ArgumentHelp("The users file (default: webd.toml's users_file).", valueName: "path"))
        var usersFile: String?

        @Option(name: .long, help: ArgumentHelp("Directory of the control sockets (cm-snapd's, for the restore points around the change).", valueName: "dir"))
        var runtimeDir: String = "/run/clustermaker"

        func path() throws -> String { try Web.usersFile(configDir: configDir, override: usersFile) }
    }

    /// The users file webd.toml names, or --users-file.
    static func usersFile(configDir: String, override: String?) throws -> String {
        if let override { return override }
        guard FileManager.default.fileExists(atPath: (configDir as NSString).appendingPathComponent(WebdConfig.fileName)) else {
            return WebdConfig().auth.usersFile
        }
        let config: WebdConfig
        do { config = try WebdConfig.load(configDir: configDir) } catch { throw CLIError.failed(error.description) }
        return config.auth.usersFile
    }

    /// Writes the users file beside and renames it into place: mode 0640, group clustermaker
    /// when there is one (cm-webd reads it as that group).
    static func write(_ text: String, to path: String) throws {
        let tmp = path + ".tmp"
        guard FileManager.default.createFile(atPath: tmp, contents: Data(text.utf8), attributes: [.posixPermissions: 0o640]) else {
            throw CLIError.failed("\(tmp): cannot write (run as root)")
        }
        if let group = getgrnam("clustermaker") { _ = chown(tmp, geteuid() == 0 ? 0 : getuid(), group.pointee.gr_gid) }
        guard rename(tmp, path) == 0 else {
            unlink(tmp)
            throw CLIError.failed("\(path): cannot replace: \(String(cString: strerror(errno)))")
        }
    }

    struct Passwd: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a console user or change its password.",
            discussion: "Reads the password from the terminal (twice), or one line from standard input when it is not a terminal. The users file is webd.toml's users_file; cm-webd reads it again on reload (systemctl reload cm-webd).")

        @Argument(help: "The user name (1-32 of a-z, A-Z, 0-9, \".\", \"_\", \"-\").")
        var user: String

        @OptionGroup var file: UsersFileOptions

        @Option(name: .long, help: ArgumentHelp("bcrypt cost, 2^N rounds (10-16).", valueName: "n"))
        var cost: UInt8 = 12

        func validate() throws {
            guard UsersFile.isUserName(user) else { throw ValidationError("\"\(user)\" is not a user name (1-32 of a-z, A-Z, 0-9, \".\", \"_\", \"-\")") }
            guard (10...16).contains(cost) else { throw ValidationError("--cost: \(cost) out of range 10…16") }
        }

        func run() async throws {
            let path = try file.path()
            let password: String
            if isatty(0) == 1 {
                guard let first = getpass("Password for \(user): ").map({ String(cString: $0) }), !first.isEmpty else { throw CLIError.failed("no password given") }
                guard let second = getpass("Again: ").map({ String(cString: $0) }), second == first else { throw CLIError.failed("the passwords differ; nothing changed") }
                password = first
            } else {
                guard let line = readLine(strippingNewline: true), !line.isEmpty else { throw CLIError.failed("no password on standard input") }
                password = line
            }
            guard password.utf8.count >= 8, password.utf8.count <= 72 else {
                throw CLIError.failed("a password has 8 to 72 bytes (bcrypt reads no further); nothing changed")
            }
            let old = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            if !old.isEmpty {
                do { _ = try UsersFile.parse(old, path: path) } catch { throw CLIError.failed("\(error); fix it first, nothing changed") }
            }
            let existed = (try? UsersFile.parse(old, path: path))?.hashes[user] != nil
            try await RestorePoint.around("web passwd \(user)", runtimeDir: file.runtimeDir) {
                try Web.write(UsersFile.setting(old, user: user, line: UsersFile.line(user: user, password: password, cost: cost)), to: path)
            }
            print("\(existed ? "changed the password of" : "added") \(user) in \(path)")
        }
    }

    struct Rm: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a console user (its open sessions end at their next expiry or a restart of cm-webd).")

        @Argument(help: "The user name.")
        var user: String

        @OptionGroup var file: UsersFileOptions

        func run() async throws {
            let path = try file.path()
            let old = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            let users: UsersFile
            do { users = try UsersFile.parse(old, path: path) } catch { throw CLIError.failed("\(error)") }
            guard users.hashes[user] != nil else { throw CLIError.failed("\(path): no user \"\(user)\"") }
            try await RestorePoint.around("web rm \(user)", runtimeDir: file.runtimeDir) { try Web.write(UsersFile.removing(old, user: user), to: path) }
            print("removed \(user) from \(path)")
        }
    }
}
