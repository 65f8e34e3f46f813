import CMConfig
import CMTypes
import Foundation
import Logging
import Synchronization

/// /etc/clustermaker from the active master to the others, through the volume. The active
/// master writes its files to `VOLUME/state/MASTER/etc/` with a manifest; a standby takes the
/// newest master's, keeps its own values of the host keys (`HostConfig.merge`: its address,
/// name, VRRP priority), checks the result with every daemon's --check-config, writes the files
/// that differ (each by rename) and has their daemons reload. A file the active master does not
/// have is left alone; a configuration that does not pass is not applied and is reported.
public final class ConfigSync: Sendable {
    struct State {
        var published: String?
        var applied: String?
        var lastChange: Date?
        var problem: String?
    }

    let configDir: String
    let logger: Logger
    /// Validates a configuration directory; returns what is wrong, or nil.
    let check: @Sendable (String) -> String?
    /// Tells the daemons whose files changed to reload them.
    let reload: @Sendable (_ daemons: [String]) -> Void
    let state = Mutex(State())

    public init(configDir: String, logger: Logger,
                check: @escaping @Sendable (String) -> String? = ConfigSync.checkWithDaemons,
                reload: @escaping @Sendable ([String]) -> Void = ConfigSync.reloadUnits) {
        self.configDir = configDir
        self.logger = logger
        self.check = check
        self.reload = reload
    }

    struct Manifest: Codable, Equatable {
        /// `group`: the file's group when it is not root's (webd-users and the power key are
        /// group clustermaker's, for the daemons that run as that user); nil for root.
        struct File: Codable, Equatable { var fingerprint: String; var mode: Int; var group: String? }
        var files: [String: File]
        /// The whole set's digest: what a standby compares with what it applied last.
        var digest: String
    }

    struct LocalFile: Equatable {
        var data: Data
        var mode: Int
        var group: String?
    }

    /// The files replicated: everything in the config directory but examples and temporaries.
    func localFiles() -> [String: LocalFile] {
        let fm = FileManager.default
        var out: [String: LocalFile] = [:]
        guard let walker = fm.enumerator(atPath: configDir) else { return [:] }
        while let rel = walker.nextObject() as? String {
            var isDir: ObjCBool = false
            let path = "\(configDir)/\(rel)"
            guard fm.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue,
                  !rel.hasSuffix(".example"), !rel.contains(".tmp"), !rel.hasPrefix("."),
                  let data = fm.contents(atPath: path) else { continue }
            let attributes = try? fm.attributesOfItem(atPath: path)
            let group = attributes?[.groupOwnerAccountName] as? String
            out[rel] = LocalFile(data: data, mode: (attributes?[.posixPermissions] as? Int) ?? 0o644, group: group == "root" ? nil : group)
        }
        return out
    }

    /// A content fingerprint (two FNV-1a 64 over the bytes): enough to see that a file changed or
    /// is half written; what is applied is compared byte for byte.
    static func fingerprint(_ data: Data) -> String {
        var a: UInt64 = 0xcbf2_9ce4_8422_2325, b: UInt64 = 0x84222325cbf29ce4
        for byte in data {
            a = (a ^ UInt64(byte)) &* 0x100_0000_01b3
            b = (b ^ UInt64(byte)) &* 0x100_0000_01b3 &+ 1
        }
        return String(format: "%016llx%016llx%08x", a, b, data.count)
    }

    static func manifest(_ files: [String: LocalFile]) -> Manifest {
        let entries = files.mapValues { Manifest.File(fingerprint: fingerprint($0.data), mode: $0.mode, group: $0.group) }
        let all = entries.keys.sorted().map { "\($0) \(entries[$0]!.fingerprint) \(entries[$0]!.mode) \(entries[$0]!.group ?? "")" }.joined(separator: "\n")
        return Manifest(files: entries, digest: fingerprint(Data(all.utf8)))
    }

    /// Active master: copies the configuration to `dir` (its etc/ on the volume) when it changed.
    public func publish(to dir: String) throws {
        let files = localFiles()
        let manifest = Self.manifest(files)
        guard state.withLock({ $0.published }) != manifest.digest || !FileManager.default.fileExists(atPath: "\(dir)/manifest.json") else { return }
        for (rel, file) in files {
            let path = "\(dir)/files/\(rel)"
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            if FileManager.default.contents(atPath: path) != file.data { try StateReplicator.writeDurably(file.data, to: path) }
            try FileManager.default.setAttributes([.posixPermissions: file.mode & 0o777], ofItemAtPath: path)
        }
        // The manifest last: a standby reading it finds every file it names.
        try StateReplicator.writeDurably(try JSONEncoder.replica.encode(manifest), to: "\(dir)/manifest.json")
        state.withLock { $0.published = manifest.digest }
        logger.notice("configuration published: \(files.count) files")
    }

    /// Standby: applies the configuration in `dir` (the active master's etc/ on the volume).
    /// Returns the files changed here.
    @discardableResult
    public func apply(from dir: String) throws -> [String] {
        guard let data = FileManager.default.contents(atPath: "\(dir)/manifest.json") else { return [] }
        let manifest = try JSONDecoder.replica.decode(Manifest.self, from: data)
        guard state.withLock({ $0.applied }) != manifest.digest else { return [] }
        let local = localFiles()
        var changes: [String: LocalFile] = [:]
        for (rel, entry) in manifest.files {
            guard let incoming = FileManager.default.contents(atPath: "\(dir)/files/\(rel)") else {
                throw ReplicationError("\(dir)/files/\(rel) is missing: the active master's copy is incomplete")
            }
            guard Self.fingerprint(incoming) == entry.fingerprint else { return [] }  // being rewritten: next time
            var content = incoming
            if HostConfig.hostKeys[rel] != nil, let own = local[rel]?.data {
                content = Data(HostConfig.merge(file: rel, incoming: String(decoding: incoming, as: UTF8.self),
                                                own: String(decoding: own, as: UTF8.self)).utf8)
            }
            // A group this host does not have is not asked for (root's stays).
            let wanted = LocalFile(data: content, mode: entry.mode, group: entry.group.flatMap { getgrnam($0) == nil ? nil : $0 })
            if local[rel] != wanted { changes[rel] = wanted }
        }
        guard !changes.isEmpty else {
            state.withLock { $0.applied = manifest.digest; $0.problem = nil }
            return []
        }
        // The whole configuration as it would be, checked before anything is written here.
        let staging = NSTemporaryDirectory() + "cm-config-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        defer { try? FileManager.default.removeItem(atPath: staging) }
        for (rel, file) in local.merging(changes, uniquingKeysWith: { $1 }) {
            let path = "\(staging)/\(rel)"
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try file.data.write(to: URL(fileURLWithPath: path))
        }
        if let problem = check(staging) {
            let p = "the active master's configuration does not pass here, not applied: \(problem)"
            if state.withLock({ $0.problem }) != p { logger.error("\(p)") }
            state.withLock { $0.problem = p }
            return []
        }
        for (rel, file) in changes.sorted(by: { $0.key < $1.key }) {
            let path = "\(configDir)/\(rel)"
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try StateReplicator.writeDurably(file.data, to: path)
            try FileManager.default.setAttributes([.posixPermissions: file.mode & 0o777], ofItemAtPath: path)
            // The group by name (the clone makes clustermaker).
            if let group = file.group {
                try FileManager.default.setAttributes([.groupOwnerAccountName: group], ofItemAtPath: path)
            }
        }
        let names = changes.keys.sorted()
        logger.notice("configuration from the active master applied: \(names.joined(separator: ", "))")
        state.withLock { $0.applied = manifest.digest; $0.lastChange = Date(); $0.problem = nil }
        reload(Self.daemons(for: names))
        return names
    }

    /// Which daemons read `files`: NAME.toml is cm-NAME's; cluster.toml is everyone's.
    static func daemons(for files: [String]) -> [String] {
        let all = ["healthd", "lbd", "vipd", "pxed", "replicad", "snapd", "webd"]
        var out = Set<String>()
        for f in files {
            if f == "cluster.toml" { out.formUnion(all) }
            let base = (f as NSString).lastPathComponent
            if base.hasSuffix(".toml"), all.contains(String(base.dropLast(5))) { out.insert(String(base.dropLast(5))) }
        }
        return out.sorted().map { "cm-\($0)" }
    }

    public var problem: String? { state.withLock { $0.problem } }
    public var lastChange: Date? { state.withLock { $0.lastChange } }

    /// Each daemon next to this one checks its file in `dir` (those that are there).
    public static let checkWithDaemons: @Sendable (String) -> String? = { dir in
        let bin = (CommandLine.arguments[0] as NSString).deletingLastPathComponent
        for d in ["healthd", "lbd", "vipd", "pxed", "replicad", "snapd"] where FileManager.default.fileExists(atPath: "\(dir)/\(d).toml") {
            let exe = "\(bin)/cm-\(d)"
            guard FileManager.default.isExecutableFile(atPath: exe) else { continue }
            guard let r = try? ChildProcess.run(exe, ["--check-config", "--config-dir", dir], timeout: .seconds(30)) else { continue }
            if !r.succeeded { return "cm-\(d): \(r.failure(exe, timeout: .seconds(30)))" }
        }
        return nil
    }

    /// Under systemd, each running daemon reloads (its unit's ExecReload: SIGHUP); without,
    /// the log says what to reload.
    public static let reloadUnits: @Sendable ([String]) -> Void = { daemons in
        guard !daemons.isEmpty else { return }
        guard ReplicaService.underSystemd else {
            FileHandle.standardError.write(Data("configuration changed for \(daemons.joined(separator: ", ")): send them SIGHUP to apply it\n".utf8))
            return
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/systemctl")
        p.arguments = ["try-reload-or-restart", "--no-block"] + daemons.map { "\($0).service" }
        try? p.run()
        p.waitUntilExit()
    }
}
