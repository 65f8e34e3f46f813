import CMTypes
import Foundation
import Glibc

/// Where a build stands, for cmctl's progress line.
public struct BuildProgress: Sendable {
    public var stage: String
    public var percent: Int
    public var elapsed: Double
}

/// What to build: a new image from Debian's archive, or a new revision of one from an
/// existing revision plus packages.
public struct BuildRequest: Sendable {
    public var name: String
    public var suite: String
    public var packages: [String]
    public var from: ImageRef?
    public var note: String?
    /// A public key file that may log in to the nodes as root (the master's).
    public var sshKey: String?
    /// A public key file that may reboot the nodes and do nothing else (the suite's power key).
    public var powerKey: String?
    public var createdBy: String

    public init(name: String, suite: String = "bookworm", packages: [String] = [], from: ImageRef? = nil, note: String? = nil,
                sshKey: String? = nil, powerKey: String? = nil, createdBy: String = "root") {
        self.name = name
        self.suite = suite
        self.packages = packages
        self.from = from
        self.note = note
        self.sshKey = sshKey
        self.powerKey = powerKey
        self.createdBy = createdBy
    }
}

/// Builds image revisions: mmdebstrap for a new root (with the downloaded packages kept in a
/// cache between builds), apt in a chroot for `--from`, then the node files, the kernel and
/// initramfs copied out, and one rename into the store. A failed build leaves nothing in the
/// store; its log stays in the work directory and its apt errors are in the error.
public struct ImageBuilder: Sendable {
    public let store: ImageStore
    /// Local disk for roots being built and for build logs.
    public let workDirectory: String
    /// Downloaded .deb files, reused by the next build.
    public let cacheDirectory: String
    /// mmdebstrap's MIRROR arguments: URLs or sources files. Empty: the master's own apt sources.
    public var mirrors: [String]
    /// Reuse a base root mmdebstrap made for the same suite, packages, sources and node files
    /// at most this long ago (WORK/base/KEY), instead of running it again. Nil: never (a
    /// build gets today's packages). For tests and repeated builds.
    public var reuseBaseFor: TimeInterval?

    /// The packages every image has on top of Debian's minimal base.
    public static let basePackages = [
        "systemd-sysv", "linux-image-amd64", "initramfs-tools", "udev", "kmod", "iproute2", "busybox",
        "nfs-common", "netbase", "openssh-server", "prometheus-node-exporter", "procps", "less", "curl",
    ]

    public init(store: ImageStore, workDirectory: String, cacheDirectory: String, mirrors: [String] = [], reuseBaseFor: TimeInterval? = nil) {
        self.store = store
        self.workDirectory = workDirectory
        self.cacheDirectory = cacheDirectory
        self.mirrors = mirrors
        self.reuseBaseFor = reuseBaseFor
    }

    /// A Debian package name (Debian policy 5.6.7), so nothing else reaches apt's command line.
    public static func isPackageName(_ s: String) -> Bool {
        guard let first = s.utf8.first, s.utf8.count >= 2, s.utf8.count <= 128 else { return false }
        let ok: (UInt8) -> Bool = { c in (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) }
        return ok(first) && s.utf8.allSatisfy { ok($0) || $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".") }
    }

    public static func isSuite(_ s: String) -> Bool {
        (1...32).contains(s.utf8.count) && s.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: "-") }
    }

    /// Checks a request before anything runs.
    public func validate(_ r: BuildRequest) throws {
        guard ImageRef.isName(r.name) else { throw ImageStoreError("\"\(r.name)\" is not a valid image name (\(ImageRef.nameRule))") }
        guard Self.isSuite(r.suite) else { throw ImageStoreError("\"\(r.suite)\" is not a Debian suite name") }
        for p in r.packages where !Self.isPackageName(p) {
            throw ImageStoreError("\"\(p)\" is not a Debian package name")
        }
        if let from = r.from { _ = try store.resolve(from) }
        for key in [r.sshKey, r.powerKey].compactMap({ $0 }) where !FileManager.default.isReadableFile(atPath: key) {
            throw ImageStoreError("\(key): no such public key file")
        }
    }

    /// Builds and publishes one revision. `progress` is called at each stage and every
    /// package set up.
    public func build(_ r: BuildRequest, progress: @escaping (BuildProgress) -> Void) throws -> ImageRevisionInfo {
        try validate(r)
        let started = Date()
        return try inWorkspace(r.name, label: "", started: started, failure: "building \(r.name) failed: ") { work, log, logPath in
            try FileManager.default.createDirectory(atPath: cacheDirectory, withIntermediateDirectories: true)
            var tracker = ProgressTracker(started: started, report: progress)
            var fromInfo: ImageRevisionInfo?
            var packages = r.packages
            let root = "\(work)/root"
            if let from = r.from {
                let rev = try store.resolve(from)!
                fromInfo = try store.info(from.name, rev)
                tracker.stage("copying \(from.name)@\(rev)", 5)
                try run(["cp", "-a", "--reflink=auto", "\(store.path(from.name, rev))/root", root], log: log)
                if !r.packages.isEmpty {
                    tracker.stage("apt-get install", 20)
                    try inChroot(root, "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Use-Pty=0 \(r.packages.joined(separator: " ")) && apt-get clean",
                                 log: log, tracker: &tracker)
                }
                packages = (fromInfo?.packages ?? []) + r.packages
                tracker.stage("update-initramfs", 80)
                try writeFiles(NodeFiles.early, into: root)
                try inChroot(root, "update-initramfs -u -k all", log: log, tracker: &tracker)
            } else if let cached = cachedBase(r) {
                tracker.stage("copying the cached base root", 10)
                log.write("reusing the base root \(cached) (--reuse-base-for)")
                try run(["cp", "-a", "--reflink=auto", cached, root], log: log)
            } else {
                try mmdebstrap(r, root: root, work: work, log: log, tracker: &tracker)
                if reuseBaseFor != nil { keepBase(r, root: root, log: log) }
            }
            tracker.stage("node files", 90)
            try finish(root: root, sshKey: r.sshKey, powerKey: r.powerKey, work: work, log: log)
            let kernel = try copyBootFiles(root: root, to: work)
            tracker.stage("publishing", 93)
            let info = ImageRevisionInfo(name: r.name, from: fromInfo.map { "\($0.name)@\($0.revision)" }, suite: fromInfo?.suite ?? r.suite,
                                         packages: packages, createdBy: r.createdBy, how: r.from == nil ? "build" : "build --from",
                                         note: r.note, kernel: kernel, seconds: Date().timeIntervalSince(started))
            let published = try publish(work, info, log: log, logPath: logPath)
            tracker.stage("done", 100)
            log.write("published \(published.ref) in \(String(format: "%.0f", published.seconds ?? 0)) s")
            return published
        }
    }

    /// What every build and shell shares: the image's lock held throughout, leftovers of
    /// interrupted runs swept, a log, and a work directory that is removed at the end. A
    /// BuildFailure becomes an error naming `failure`, the cause and the log.
    private func inWorkspace<T>(_ name: String, label: String, started: Date, failure: String,
                                _ body: (_ work: String, _ log: BuildLog, _ logPath: String) throws -> T) throws -> T {
        try store.withLock(name, wait: false) {
            store.sweep()
            try FileManager.default.createDirectory(atPath: "\(workDirectory)/logs", withIntermediateDirectories: true)
            let logPath = "\(workDirectory)/logs/\(name)\(label)-\(Self.stamp(started)).log"
            let log = try BuildLog(path: logPath)
            let work = "\(workDirectory)/\(name).\(getpid())"
            try? FileManager.default.removeItem(atPath: work)
            try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
            defer { try? FileManager.default.removeItem(atPath: work) }
            do {
                return try body(work, log, logPath)
            } catch let e as BuildFailure {
                log.write("FAILED: \(e.message)")
                throw ImageStoreError("\(failure)\(e.message) (log: \(logPath))")
            }
        }
    }

    /// The work directory's root, kernel and initramfs become the image's next revision, with
    /// the log beside them; nothing is left in the store if that fails.
    private func publish(_ work: String, _ info: ImageRevisionInfo, log: BuildLog, logPath: String) throws -> ImageRevisionInfo {
        let incoming = try store.incoming(info.name)
        do {
            try moveTree(work, into: incoming, log: log)
            try? FileManager.default.copyItem(atPath: logPath, toPath: "\(incoming)/build.log")
            return try store.publish(incoming, info: info)
        } catch {
            try? FileManager.default.removeItem(atPath: incoming)
            throw error
        }
    }

    struct BuildFailure: Error { var message: String }

    /// The base root cache's key: everything mmdebstrap's result depends on.
    func baseKey(_ r: BuildRequest) -> String {
        let mirrorArgs = mirrors.isEmpty ? AptSources.mirrors(suite: r.suite) : mirrors
        let sources = mirrorArgs.map { (try? String(contentsOfFile: $0, encoding: .utf8)) ?? $0 }
        let text = ([r.suite] + (Self.basePackages + r.packages).sorted() + sources + NodeFiles.early.map { "\($0.path)\n\($0.content)" })
            .joined(separator: "\u{0}")
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in text.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        return "\(r.suite)-" + String(h, radix: 16)
    }

    func cachedBase(_ r: BuildRequest) -> String? {
        guard let limit = reuseBaseFor else { return nil }
        let dir = "\(workDirectory)/base/\(baseKey(r))"
        guard let attrs = try? FileManager.default.attributesOfItem(atPath: dir), let made = attrs[.modificationDate] as? Date,
              Date().timeIntervalSince(made) <= limit, FileManager.default.fileExists(atPath: "\(dir)/root/boot") else { return nil }
        return "\(dir)/root"
    }

    /// Keeps a copy of a fresh base root for `cachedBase`; a failure only costs the next build time.
    func keepBase(_ r: BuildRequest, root: String, log: BuildLog) {
        let dir = "\(workDirectory)/base/\(baseKey(r))", tmp = "\(dir).tmp-\(getpid())"
        try? FileManager.default.removeItem(atPath: tmp)
        do {
            try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
            try run(["cp", "-a", "--reflink=auto", root, "\(tmp)/root"], log: log)
            try? FileManager.default.removeItem(atPath: dir)
            guard rename(tmp, dir) == 0 else { throw SystemError("renaming \(tmp)") }
        } catch {
            log.write("not keeping the base root: \(error)")
            try? FileManager.default.removeItem(atPath: tmp)
        }
    }

    /// `cmctl image shell`: a shell (or `command`) in a copy of a revision's root; what it
    /// changed becomes the next revision. Nil when nothing changed. A shell that fails
    /// commits nothing.
    public func shell(_ ref: ImageRef, command: String?, note: String?, createdBy: String) throws -> ImageRevisionInfo? {
        guard let rev = try store.resolve(ref) else { throw ImageStoreError("\(ref.name) is a kernel-only image: it has no root to change") }
        let source = try store.info(ref.name, rev)
        let started = Date()
        return try inWorkspace(ref.name, label: "-shell", started: started, failure: "") { work, log, logPath in
            let root = "\(work)/root", original = "\(store.path(ref.name, rev))/root"
            try run(["cp", "-a", "--reflink=auto", original, root], log: log)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = Self.chrootCommand(root, command ?? "exec /bin/bash -l || exec /bin/sh")
            var env = ProcessInfo.processInfo.environment
            env["PS1"] = "(image \(ref.name)@\(rev)) \\w # "
            p.environment = env
            log.write("$ shell in a copy of \(ref.name)@\(rev)\(command.map { ": " + $0 } ?? "")")
            try p.run()
            p.waitUntilExit()
            guard p.terminationStatus == 0 else { throw BuildFailure(message: "the shell exited with status \(p.terminationStatus): nothing committed") }
            try finish(root: root, sshKey: nil, powerKey: nil, work: work, log: log)
            let changes = try TreeDiff.compare(original, root)
            guard !changes.isEmpty else { return nil }
            if changes.lines.contains(where: { $0.hasPrefix("A /boot/") || $0.hasPrefix("C /boot/") || $0.contains("/etc/initramfs-tools/") }) {
                try run(Self.chrootCommand(root, "update-initramfs -u -k all"), log: log)
            }
            let kernel = try copyBootFiles(root: root, to: work)
            let info = ImageRevisionInfo(name: ref.name, from: "\(ref.name)@\(rev)", suite: source.suite, packages: source.packages,
                                         createdBy: createdBy, how: command == nil ? "shell" : "shell --command", note: note ?? command,
                                         kernel: kernel, seconds: Date().timeIntervalSince(started))
            return try publish(work, info, log: log, logPath: logPath)
        }
    }

    private func mmdebstrap(_ r: BuildRequest, root: String, work: String, log: BuildLog, tracker: inout ProgressTracker) throws {
        let files = "\(work)/files"
        try writeFiles(NodeFiles.early, into: files)
        var args = ["mmdebstrap", "--verbose", "--mode=root", "--variant=minbase", "--format=directory",
                    "--include=" + (Self.basePackages + r.packages).joined(separator: ","),
                    "--skip=essential/unlink",
                    "--aptopt=Dpkg::Use-Pty \"0\"",
                    "--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives/",
                    "--setup-hook=sync-in \(cacheDirectory) /var/cache/apt/archives/",
                    "--essential-hook=cp -a \(files)/. \"$1\"/",
                    "--customize-hook=sync-out /var/cache/apt/archives \(cacheDirectory)",
                    r.suite, root]
        args += mirrors.isEmpty ? AptSources.mirrors(suite: r.suite) : mirrors
        try run(args, log: log, tracker: &tracker)
    }

    /// The node files, the identity cleanup and the keys: the last step of every build. With
    /// neither key (image shell) the root's authorized_keys stays as it is.
    func finish(root: String, sshKey: String?, powerKey: String?, work: String, log: BuildLog) throws {
        try writeFiles(NodeFiles.late, into: root)
        let script = "\(work)/finish.sh"
        try NodeFiles.finishScript.write(toFile: script, atomically: true, encoding: .utf8)
        var keys: [String] = []
        if sshKey != nil || powerKey != nil {
            let read = { (path: String) throws -> String in
                do { return try String(contentsOfFile: path, encoding: .utf8) } catch { throw ImageStoreError("\(path): cannot read the public key") }
            }
            let file = "\(work)/authorized_keys"
            try NodeFiles.authorizedKeys(masterKey: try sshKey.map(read), powerKey: try powerKey.map(read)).write(toFile: file, atomically: true, encoding: .utf8)
            keys = [file]
        }
        try run(["sh", script, root] + keys, log: log)
    }

    /// vmlinuz and initrd.img of the newest kernel in root/boot, beside root. Returns the version.
    func copyBootFiles(root: String, to dir: String) throws -> String {
        let boot = (try? FileManager.default.contentsOfDirectory(atPath: "\(root)/boot")) ?? []
        let versions = boot.filter { $0.hasPrefix("vmlinuz-") }.map { String($0.dropFirst("vmlinuz-".count)) }
            .filter { boot.contains("initrd.img-\($0)") }.sorted { $0.compare($1, options: .numeric) == .orderedAscending }
        guard let v = versions.last else { throw BuildFailure(message: "the root has no kernel with an initramfs in /boot (package linux-image-amd64)") }
        for (from, to) in [("vmlinuz-\(v)", "vmlinuz"), ("initrd.img-\(v)", "initrd.img")] {
            try FileManager.default.copyItem(atPath: "\(root)/boot/\(from)", toPath: "\(dir)/\(to)")
            chmod("\(dir)/\(to)", 0o644)
        }
        return v
    }

    /// Moves the built files (root, vmlinuz, initrd.img) into the store's incoming directory:
    /// a rename on the same filesystem, a copy that keeps everything otherwise.
    private func moveTree(_ work: String, into incoming: String, log: BuildLog) throws {
        var a = stat(), b = stat()
        let same = stat(work, &a) == 0 && stat(incoming, &b) == 0 && a.st_dev == b.st_dev
        for item in ["root", "vmlinuz", "initrd.img"] {
            if same {
                guard rename("\(work)/\(item)", "\(incoming)/\(item)") == 0 else { throw SystemError("moving \(work)/\(item) to \(incoming)") }
            } else {
                try run(["cp", "-a", "\(work)/\(item)", "\(incoming)/\(item)"], log: log)
            }
        }
    }

    func writeFiles(_ files: [(path: String, content: String, mode: Int)], into root: String) throws {
        for f in files {
            let p = root + f.path
            try FileManager.default.createDirectory(atPath: (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o755])
            try f.content.write(toFile: p, atomically: false, encoding: .utf8)
            chmod(p, mode_t(f.mode))
        }
    }

    /// Runs a shell command in the root with /proc, /sys and /dev mounted in a private mount
    /// namespace (they go away with it, even if this process is killed).
    func inChroot(_ root: String, _ command: String, log: BuildLog, tracker: inout ProgressTracker) throws {
        try run(Self.chrootCommand(root, command), log: log, tracker: &tracker)
    }

    public static func chrootCommand(_ root: String, _ command: String, interactive: Bool = false) -> [String] {
        let q = shellQuote(root)
        let setup = "mount -t proc proc \(q)/proc && mount -t sysfs sys \(q)/sys && mount --rbind /dev \(q)/dev && " +
            "cp -L /etc/resolv.conf \(q)/etc/resolv.conf 2>/dev/null; "
        return ["unshare", "--mount", "--propagation", "private", "--fork", "sh", "-c",
                setup + "exec chroot \(q) /bin/sh -c \(shellQuote(command))"]
    }

    public static func shellQuote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }

    func run(_ args: [String], log: BuildLog) throws {
        var t = ProgressTracker(started: Date(), report: { _ in })
        try run(args, log: log, tracker: &t)
    }

    /// Runs a program with its output in the log, feeding the tracker line by line. A failure
    /// carries apt's and mmdebstrap's error lines ("E: Unable to locate package …").
    func run(_ args: [String], log: BuildLog, tracker: inout ProgressTracker) throws {
        log.write("$ " + args.map { $0.contains(" ") ? Self.shellQuote($0) : $0 }.joined(separator: " "))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        var env = ProcessInfo.processInfo.environment
        env["DEBIAN_FRONTEND"] = "noninteractive"
        env["LC_ALL"] = "C.UTF-8"
        p.environment = env
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        p.standardInput = FileHandle.nullDevice
        do { try p.run() } catch { throw BuildFailure(message: "cannot run \(args[0]): \(error)") }
        var errors: [String] = []
        var pending = Data()
        let handle = pipe.fileHandleForReading
        while true {
            let chunk = handle.availableData
            if chunk.isEmpty { break }
            pending.append(chunk)
            while let nl = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: pending[pending.startIndex..<nl], as: UTF8.self)
                pending.removeSubrange(pending.startIndex...nl)
                log.write(line)
                tracker.line(line)
                if line.hasPrefix("E: ") || line.hasPrefix("W: Failure") { errors.append(line) }
            }
        }
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            let why = errors.isEmpty ? "\(args[0]) exited with status \(p.terminationStatus)" : errors.prefix(4).joined(separator: "; ")
            throw BuildFailure(message: why)
        }
    }

    static func stamp(_ d: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd-HHmmss"
        return f.string(from: d)
    }
}

/// The build log: every line of every program the build ran.
final class BuildLog: @unchecked Sendable {
    private let handle: FileHandle

    init(path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o640]),
              let h = FileHandle(forWritingAtPath: path) else { throw SystemError("creating \(path)") }
        handle = h
    }

    func write(_ line: String) { handle.write(Data((line + "\n").utf8)) }

    deinit { try? handle.close() }
}

/// Turns mmdebstrap's and apt's output into stage and percent: mmdebstrap's "I:" lines name
/// the stages; while packages install, apt's "N newly installed" and each "Setting up" line
/// move the percent between the stage's bounds.
public struct ProgressTracker {
    let started: Date
    let report: (BuildProgress) -> Void
    public private(set) var stage = "starting"
    public private(set) var percent = 0
    var toInstall = 0
    var setUp = 0
    var span = (0, 0)

    public init(started: Date, report: @escaping (BuildProgress) -> Void) {
        self.started = started
        self.report = report
    }

    static let stages: [(prefix: String, stage: String, percent: Int, until: Int)] = [
        ("I: running apt-get update", "apt-get update", 2, 5),
        ("I: downloading packages", "downloading", 5, 15),
        ("I: extracting archives", "extracting", 15, 20),
        ("I: installing essential packages", "installing essential packages", 20, 35),
        ("I: running --essential-hook", "node files", 35, 36),
        ("I: installing remaining packages", "installing packages", 36, 85),
        ("I: running --customize-hook", "customizing", 85, 88),
        ("I: cleaning package lists", "cleaning", 88, 90),
    ]

    public mutating func stage(_ name: String, _ percent: Int) {
        stage = name
        self.percent = max(self.percent, percent)
        span = (percent, percent)
        toInstall = 0
        setUp = 0
        report(BuildProgress(stage: stage, percent: self.percent, elapsed: Date().timeIntervalSince(started)))
    }

    public mutating func line(_ line: String) {
        if let s = Self.stages.first(where: { line.hasPrefix($0.prefix) }) {
            stage(s.stage, s.percent)
            span = (s.percent, s.until)
            return
        }
        // "0 upgraded, 212 newly installed, 0 to remove and 0 not upgraded."
        if line.contains(" newly installed,"), let n = line.split(separator: ",").first(where: { $0.contains("newly installed") })?
            .split(separator: " ").first.flatMap({ Int($0) }) {
            toInstall = n
            setUp = 0
        } else if line.hasPrefix("Setting up "), toInstall > 0 {
            setUp += 1
            let p = span.0 + (span.1 - span.0) * min(setUp, toInstall) / toInstall
            if p > percent {
                percent = p
                report(BuildProgress(stage: stage, percent: percent, elapsed: Date().timeIntervalSince(started)))
            }
        }
    }
}

/// The master's apt sources, for images "from the same apt sources as the master".
public enum AptSources {
    /// mmdebstrap MIRROR arguments: the master's sources files when the image's suite is the
    /// master's own (security and updates included); else the master's first Debian URI.
    public static func mirrors(suite: String, etc: String = "/etc") -> [String] {
        let codename = osRelease(etc)["VERSION_CODENAME"]
        var files: [String] = []
        if let list = try? String(contentsOfFile: "\(etc)/apt/sources.list", encoding: .utf8),
           list.split(separator: "\n").contains(where: { $0.trimmingCharacters(in: .whitespaces).hasPrefix("deb ") }) {
            files.append("\(etc)/apt/sources.list")
        }
        let dir = "\(etc)/apt/sources.list.d"
        for f in ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted() where f.hasSuffix(".list") || f.hasSuffix(".sources") {
            files.append("\(dir)/\(f)")
        }
        if codename == suite, !files.isEmpty { return files }
        for f in files {
            let text = (try? String(contentsOfFile: f, encoding: .utf8)) ?? ""
            for line in text.split(separator: "\n") {
                let words = line.split(separator: " ")
                if line.hasPrefix("URIs:"), let uri = words.dropFirst().first, !uri.contains("security") { return [String(uri)] }
                if words.first == "deb", let uri = words.dropFirst().first(where: { $0.hasPrefix("http") || $0.hasPrefix("file:") }),
                   !uri.contains("security") { return [String(uri)] }
            }
        }
        return ["http://deb.debian.org/debian"]
    }

    static func osRelease(_ etc: String) -> [String: String] {
        let text = (try? String(contentsOfFile: "\(etc)/os-release", encoding: .utf8)) ?? ""
        var out: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            out[String(line[..<eq])] = String(line[line.index(after: eq)...]).trimmingCharacters(in: CharacterSet(charactersIn: "\"'"))
        }
        return out
    }
}
