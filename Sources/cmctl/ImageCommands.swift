import ArgumentParser
import CMConfig
import CMImage
import CMTypes
import CMWire
import Foundation
import Glibc

struct Image: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Node OS images: build, change in a shell, list, show, revisions, diff, remove.",
        discussion: "Images live in pxed.toml's images_dir, one directory per revision; cm-pxed boots nodes from them. Building and changing need root.",
        subcommands: [Build.self, List.self, Show.self, Revisions.self, Diff.self, Shell.self, Rm.self, Exports.self],
        defaultSubcommand: List.self)
}

/// Where images are: pxed.toml's images_dir unless given.
struct ImageOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Configuration directory (for pxed.toml's images_dir).", valueName: "dir"))
    var configDir: String = "/etc/clustermaker"
    @Option(name: .long, help: ArgumentHelp("The image store (default: pxed.toml's images_dir).", valueName: "dir"))
    var imagesDir: String?
    @Option(name: .long, help: ArgumentHelp("Local disk for builds, their logs and the package cache.", valueName: "dir"))
    var workDir: String = "/var/cache/clustermaker/images"

    func store() throws -> ImageStore {
        if let imagesDir { return ImageStore(directory: imagesDir) }
        let config: PxedConfig
        do { config = try PxedConfig.load(configDir: configDir) } catch {
            throw CLIError.failed("\(configDir)/\(PxedConfig.fileName): \(error) (or give --images-dir)")
        }
        return ImageStore(directory: config.pxed.imagesDirectory ?? "/var/lib/clustermaker/pxed/images")
    }

    func builder() throws -> ImageBuilder {
        ImageBuilder(store: try store(), workDirectory: workDir, cacheDirectory: "\(workDir)/debs")
    }

    static func ref(_ text: String) throws -> ImageRef {
        guard let r = ImageRef(text) else { throw CLIError.failed("\"\(text)\" is not an image (NAME or NAME@REVISION; a name is \(ImageRef.nameRule))") }
        return r
    }

    static func requireRoot(_ what: String) throws {
        guard geteuid() == 0 else { throw CLIError.failed("\(what) needs root (it runs mmdebstrap, apt and chroot)") }
    }
}

/// "stage  42%  1m05s", rewritten in place on a terminal, one line per stage otherwise.
struct ProgressLine {
    let tty = isatty(STDERR_FILENO) == 1
    var lastStage = ""

    mutating func show(_ p: BuildProgress) {
        let text = p.stage.padding(toLength: max(32, p.stage.count), withPad: " ", startingAt: 0) + String(format: " %3d%%  ", p.percent) + Format.duration(p.elapsed)
        if tty {
            FileHandle.standardError.write(Data("\r\u{1b}[K\(text)".utf8))
        } else if p.stage != lastStage {
            FileHandle.standardError.write(Data("\(text)\n".utf8))
        }
        lastStage = p.stage
    }

    func end() { if tty { FileHandle.standardError.write(Data("\n".utf8)) } }
}

extension Image {
    struct Build: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Build a new image, or a new revision of one (Debian by mmdebstrap, from the master's apt sources).",
            discussion: "Every image has a kernel, an initramfs that mounts the root read-only over NFSv4.1 with a tmpfs overlay, prometheus-node-exporter and an SSH server that lets the master's key in. The build log is kept in WORK_DIR/logs.")
        @OptionGroup var options: ImageOptions
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Image name.") var name: String
        @Option(help: "Debian suite (ignored with --from).") var suite = "bookworm"
        @Option(help: "Packages to add, comma or space separated.") var packages: String = ""
        @Option(help: "Start from this image (NAME or NAME@REV) instead of an empty root: its newest or given revision, plus --packages.") var from: String?
        @Option(help: "A note kept with the revision.") var note: String?
        @Option(help: "Public key allowed to log in to the nodes as root (default: /etc/clustermaker/ssh/id_ed25519.pub, made if missing).")
        var sshKey: String?
        @Option(help: "Public key allowed to reboot the nodes and do nothing else (default: /etc/clustermaker/power_ed25519.pub, made if missing).")
        var powerKey: String?
        @Option(help: ArgumentHelp("Reuse a base root built at most this many hours ago with the same suite, packages and sources instead of running mmdebstrap (kept in WORK_DIR/base).", valueName: "hours"))
        var reuseBaseFor: Int?

        func run() async throws {
            try await reportingErrors {
                try ImageOptions.requireRoot("image build")
                guard ImageRef.isName(name) else { throw CLIError.failed("\"\(name)\" is not a valid image name (\(ImageRef.nameRule))") }
                let list = packages.split(whereSeparator: { $0 == "," || $0 == " " }).map(String.init)
                let key = try sshKey ?? MasterKey.publicKey(configDir: options.configDir)
                let power = try powerKey ?? MasterKey.powerKey(configDir: options.configDir)
                let request = BuildRequest(name: name, suite: suite, packages: list, from: try from.map(ImageOptions.ref), note: note, sshKey: key, powerKey: power,
                                           createdBy: ProcessInfo.processInfo.environment["SUDO_USER"] ?? "root")
                var line = ProgressLine()
                let info: ImageRevisionInfo
                do {
                    var builder = try options.builder()
                    if let h = reuseBaseFor {
                        guard h > 0 else { throw CLIError.failed("--reuse-base-for: a number of hours above 0") }
                        builder.reuseBaseFor = TimeInterval(h) * 3600
                    }
                    info = try await RestorePoint.around("image build \(name)", runtimeDir: global.runtimeDir) { try builder.build(request) { line.show($0) } }
                    line.end()
                } catch let e as ImageStoreError {
                    line.end()
                    throw CLIError.failed(e.description)
                }
                await Volume.syncAfterImageChange(global)
                if global.json { return try printJSON(info) }
                print("built \(info.ref) (kernel \(info.kernel ?? "-"), \(Format.duration(info.seconds ?? 0)))")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List images: newest revision, suite, kernel, when.")
        @OptionGroup var options: ImageOptions
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await reportingErrors {
                let store = try options.store()
                let rows = store.images().map { name in (name, store.revisions(name)) }
                if global.json { return try printJSON(rows.map { ImageSummary(name: $0.0, revisions: $0.1.map(\.revision), latest: $0.1.last) }) }
                var t = Table("IMAGE", "REVISIONS", "LATEST", "SUITE", "KERNEL", "CREATED")
                for (name, revs) in rows {
                    if let last = revs.last {
                        t.add(name, ImageStore.ranges(revs.map(\.revision)), "\(last.revision)", last.suite, last.kernel ?? "-", Format.time(last.created))
                    } else {
                        t.add(name, "-", "-", "-", "(kernel only)", "-")
                    }
                }
                print(t.render())
            }
        }
    }

    struct ImageSummary: Codable {
        var name: String
        var revisions: [Int]
        var latest: ImageRevisionInfo?
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show an image's revision (the newest unless NAME@REV).")
        @OptionGroup var options: ImageOptions
        @OptionGroup var global: GlobalOptions
        @Argument(help: "NAME or NAME@REV.") var image: String

        func run() async throws {
            try await reportingErrors {
                let store = try options.store()
                let ref = try ImageOptions.ref(image)
                guard let rev = try catching({ try store.resolve(ref) }) else { return print("\(ref.name): a kernel-only image (\(store.path(ref.name)))") }
                let i = try catching { try store.info(ref.name, rev) }
                if global.json { return try printJSON(i) }
                print("""
                    image:      \(i.name)@\(i.revision)
                    suite:      \(i.suite)
                    kernel:     \(i.kernel ?? "-")
                    from:       \(i.from ?? "-")
                    made by:    \(i.how), \(i.createdBy), \(Format.time(i.created))\(i.seconds.map { " in \(Format.duration($0))" } ?? "")
                    note:       \(i.note ?? "-")
                    packages:   \(i.packages.isEmpty ? "(base only)" : i.packages.joined(separator: " "))
                    root:       \(store.path(i.name, i.revision))/root
                    """)
            }
        }
    }

    struct Revisions: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "An image's revisions, oldest first.")
        @OptionGroup var options: ImageOptions
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Image name.") var name: String

        func run() async throws {
            try await reportingErrors {
                let store = try options.store()
                let revs = store.revisions(try ImageOptions.ref(name).name)
                if global.json { return try printJSON(revs) }
                guard !revs.isEmpty else { throw CLIError.failed("no image \"\(name)\" with revisions in \(store.directory)") }
                var t = Table("REV", "CREATED", "BY", "HOW", "FROM", "NOTE")
                for r in revs { t.add("\(r.revision)", Format.time(r.created), r.createdBy, r.how, r.from ?? "-", r.note ?? "-") }
                print(t.render())
            }
        }
    }

    struct Diff: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Files added (A), changed (C) and removed (D) between two revisions.")
        @OptionGroup var options: ImageOptions
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Image name.") var name: String
        @Argument(help: "The older revision.") var from: Int
        @Argument(help: "The newer revision.") var to: Int

        func run() async throws {
            try await reportingErrors {
                let store = try options.store()
                for r in [from, to] { _ = try catching { try store.resolve(ImageRef(name: name, revision: r)) } }
                let d = try catching { try TreeDiff.compare("\(store.path(name, from))/root", "\(store.path(name, to))/root") }
                if global.json { return try printJSON(d) }
                for l in d.lines { print(l) }
            }
        }
    }

    struct Shell: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Change an image in a shell (chroot of a copy); on exit the changes become a new revision.",
            discussion: "Nodes keep running the revision they booted. With nothing changed no revision is made; a shell that exits non-zero discards the copy.")
        @OptionGroup var options: ImageOptions
        @OptionGroup var global: GlobalOptions
        @Argument(help: "NAME or NAME@REV to start from.") var image: String
        @Option(help: "A note kept with the new revision.") var note: String?
        @Option(help: "Run this command instead of an interactive shell.") var command: String?

        func run() async throws {
            try await reportingErrors {
                try ImageOptions.requireRoot("image shell")
                let builder = try options.builder()
                let ref = try ImageOptions.ref(image)
                let info = try await RestorePoint.around("image shell \(image)", runtimeDir: global.runtimeDir) {
                    try catching {
                        try builder.shell(ref, command: command, note: note, createdBy: ProcessInfo.processInfo.environment["SUDO_USER"] ?? "root")
                    }
                }
                guard let info else { return print("nothing changed: no new revision") }
                await Volume.syncAfterImageChange(global)
                print("committed \(info.ref)")
            }
        }
    }

    struct Rm: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove an image or one revision (NAME@REV); refused while a node or group boots it.")
        @OptionGroup var options: ImageOptions
        @OptionGroup var global: GlobalOptions
        @Argument(help: "NAME or NAME@REV.") var image: String
        @Flag(help: "Remove even when cm-pxed cannot be asked which nodes use it.") var force = false

        func run() async throws {
            try await reportingErrors {
                let store = try options.store()
                let ref = try ImageOptions.ref(image)
                guard store.exists(ref.name) else { throw CLIError.failed("no image \"\(ref.name)\" in \(store.directory)") }
                let users: [String]
                do {
                    users = try await global.call(.pxed) { try await $0.requestAll(MessageType.nodeList, NodeListRequest(), as: NodeListReply.self) }
                        .filter { n in ImageUse.uses(n, ref, store: store) }.map(\.name)
                } catch let e as CLIError where !force {
                    throw CLIError.failed("cannot ask cm-pxed which nodes boot \(ref) (\(e)); --force removes it anyway")
                } catch {
                    users = []
                }
                let groups = ImageUse.groups(configDir: options.configDir, ref, store: store)
                guard users.isEmpty && groups.isEmpty else {
                    throw CLIError.failed("\(ref) is in use: " + (groups.map { "group \($0)" } + users.map { "node \($0)" }).joined(separator: ", "))
                }
                try await RestorePoint.around("image rm \(image)", runtimeDir: global.runtimeDir) { try catching { try store.remove(ref.name, revision: ref.revision) } }
                await Volume.syncAfterImageChange(global)
                print("removed \(ref)")
            }
        }
    }
}

extension Image {
    struct Exports: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write nfs-ganesha's exports for the image store: each revision read-only at /images/NAME/REV, /shared read-write.",
            discussion: "With --output the file is written beside itself and renamed into place, so ganesha never reads half of it.")
        @OptionGroup var options: ImageOptions
        @OptionGroup var global: GlobalOptions
        @Option(help: "gluster (the store is on the suite's GlusterFS volume) or vfs (a local directory).") var backend = "gluster"
        @Option(help: "The GlusterFS volume.") var volume = "clustermaker"
        @Option(help: "The glusterd that serves the volume's layout.") var volumeServer = "localhost"
        @Option(help: "Networks allowed to mount, comma separated (the cluster network).") var clients: String
        @Option(help: "VFS: the directory that holds images/ and shared/ (default: the store's parent).") var top: String?
        @Option(help: "Write here instead of standard output.") var output: String?

        func run() async throws {
            try await reportingErrors {
                guard let b = GaneshaExports.Backend(rawValue: backend) else { throw CLIError.failed("--backend: gluster or vfs, not \"\(backend)\"") }
                let nets = clients.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
                for n in nets where IPv4Network(n) == nil && IPv4Address(n) == nil { throw CLIError.failed("--clients: \"\(n)\" is not an IPv4 network") }
                let store = try options.store()
                let t = b == .vfs ? (top ?? (store.directory as NSString).deletingLastPathComponent) : ""
                let text = GaneshaExports.forStore(store, top: t, backend: b, volume: volume, volumeServer: volumeServer, clients: nets).render()
                guard let output else { return print(text, terminator: "") }
                try catching { try GaneshaExports.install(text, at: output) }
            }
        }
    }
}

/// Which nodes and groups boot an image revision.
enum ImageUse {
    /// A reference means `ref` when it names the same image and (for a revision) the revision
    /// it resolves to now, or the one the node booted last.
    static func means(_ text: String?, _ ref: ImageRef, store: ImageStore) -> Bool {
        guard let text, let r = ImageRef(text), r.name == ref.name else { return false }
        guard let wanted = ref.revision else { return true }
        return (r.revision ?? store.revisionNumbers(r.name).last) == wanted
    }

    static func uses(_ n: NodeInfo, _ ref: ImageRef, store: ImageStore) -> Bool {
        means(n.image, ref, store: store) || means(n.nextImage, ref, store: store) || means(n.lastImage, ref, store: store)
    }

    static func groups(configDir: String, _ ref: ImageRef, store: ImageStore) -> [String] {
        guard let config = try? PxedConfig.load(configDir: configDir) else { return [] }
        return config.groups.filter { means($0.image, ref, store: store) }.map(\.name)
    }
}

/// The master's own SSH key, which the images let in as root: /etc/clustermaker/ssh/id_ed25519
/// (it travels with /etc/clustermaker to a backup master).
enum MasterKey {
    static func publicKey(configDir: String) throws -> String {
        let dir = "\(configDir)/ssh", key = "\(dir)/id_ed25519"
        if !FileManager.default.fileExists(atPath: key + ".pub") {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            try make(key, comment: "clustermaker")
        }
        return key + ".pub"
    }

    /// The suite's power key, CONFIG_DIR/power_ed25519 (made if missing): the images let it
    /// reboot a node and nothing else. Group clustermaker may read it (cm-pxed runs as user
    /// clustermaker); returns the public half.
    static func powerKey(configDir: String) throws -> String {
        let key = "\(configDir)/power_ed25519"
        if !FileManager.default.fileExists(atPath: key + ".pub") {
            try FileManager.default.createDirectory(atPath: configDir, withIntermediateDirectories: true)
            try make(key, comment: "clustermaker-power")
        }
        if let group = getgrnam("clustermaker") {
            _ = chown(key, 0, group.pointee.gr_gid)
            _ = chmod(key, 0o640)
        }
        return key + ".pub"
    }

    /// An ed25519 key pair without a passphrase at `key` and `key`.pub, named COMMENT@HOST.
    private static func make(_ key: String, comment: String) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/ssh-keygen")
        p.arguments = ["-q", "-t", "ed25519", "-N", "", "-C", "\(comment)@\(ProcessInfo.processInfo.hostName)", "-f", key]
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw CLIError.failed("ssh-keygen could not make \(key)") }
    }
}

/// Runs `body`, turning the image store's errors into cmctl's.
func catching<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as ImageStoreError { throw CLIError.failed(e.description) } catch let e as SystemError { throw CLIError.failed(e.description) }
}
