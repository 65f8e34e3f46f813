import CMTypes
import Foundation

/// Commands run as root on another host over SSH with the master's key (node diff, master
/// clone). Host keys are not checked: the nodes' change with every image, and a host being
/// cloned is about to get a new one; the key file is what authenticates.
struct RemoteShell {
    let address: String
    let key: String
    var port = 22
    var connectTimeout = 10

    var sshArguments: [String] {
        ["-i", key, "-p", "\(port)", "-o", "BatchMode=yes", "-o", "ConnectTimeout=\(connectTimeout)", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ServerAliveInterval=10", "root@\(address)"]
    }

    /// Runs `command` (one shell command line) there, with `input` on its stdin.
    func run(_ command: String, input: Data? = nil) throws -> LocalCommand.Result {
        guard FileManager.default.isReadableFile(atPath: key) else { throw CLIError.failed("\(key): cannot read the SSH key") }
        return try LocalCommand.run("/usr/bin/ssh", sshArguments + [command], input: input)
    }

    /// Runs `command`; a non-zero exit is an error quoting the command's own message.
    @discardableResult
    func check(_ command: String, input: Data? = nil, what: String? = nil) throws -> String {
        let r = try run(command, input: input)
        guard r.status == 0 else {
            let why = r.errors.isEmpty ? r.text.trimmingCharacters(in: .whitespacesAndNewlines) : r.errors
            throw CLIError.failed("\(what ?? command) on \(address): \(why.isEmpty ? "exit status \(r.status)" : why)")
        }
        return r.text
    }
}

/// A program run here, its output and errors read while its input is written.
enum LocalCommand {
    typealias Result = ChildProcess.Result

    static func run(_ program: String, _ args: [String], input: Data? = nil) throws -> Result {
        do { return try ChildProcess.run(program, args, input: input) } catch { throw CLIError.failed("cannot run \(program): \(error)") }
    }
}
