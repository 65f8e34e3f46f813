import CMConfig
import CMTypes
import Foundation

/// One data set of snapd.toml and its snapshots, whatever it is: directories (a group of
/// stores), an SQLite database or a PostgreSQL cluster (a store whose trees their own backup
/// tools make). cm-snapd holds one per data set.
public struct DataSetSnapshots: Sendable {
    public let spec: SnapdConfig.DataSet
    let group: SnapshotGroup?
    let store: SnapshotStore?

    /// The snapshots of `set` under `root` (snapd.toml's STORE/NAME, or the set's own store);
    /// `alsoExcluding`: what no directory data set holds (the common store, with every other
    /// data set's snapshots).
    public init(_ set: SnapdConfig.DataSet, root: String, alsoExcluding: [String] = []) throws {
        self.spec = set
        switch spec.kind {
        case .directory:
            group = try SnapshotGroup(name: spec.name, paths: spec.paths, root: root, excluding: spec.exclude)
            store = nil
        case .sqlite:
            let db = spec.paths[0], file = (db as NSString).lastPathComponent
            group = nil
            store = try SnapshotStore(dataSet: spec.name, source: db, root: root, engine: .sqliteBackup,
                                      why: "SQLite's online backup API copies \(db) while it is written") { tree in
                guard SQLiteCopy.isDatabase(db) else { throw SnapshotError("\(db) is not an SQLite database") }
                try FileManager.default.createDirectory(atPath: tree, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
                try SQLiteCopy.backup(from: db, to: "\(tree)/\(file)")
            }
        case .postgresql:
            let pg = PostgresCluster(set)
            group = nil
            try SnapshotStore.makeRoot(root)
            if let why = try pg.atomicSnapshotReason(store: root) {
                // One atomic snapshot of the data directory with its WAL: what the server
                // would find after a power cut, so a copy recovers as after a crash. No
                // checkpoint, no backup mode: the server does not notice.
                let data = pg.dataDirectory
                store = try SnapshotStore(dataSet: spec.name, source: data, root: root, engine: .btrfsSubvolume, why: why) { tree in
                    try SnapshotStore.run("/usr/bin/btrfs", ["subvolume", "snapshot", "-r", data, tree])
                }
            } else {
                store = try SnapshotStore(dataSet: spec.name, source: pg.dataDirectory, root: root, engine: .pgBasebackup,
                                          why: "pg_basebackup copies \(pg.dataDirectory) from the running server, its WAL streamed beside") { tree in
                    try pg.basebackup(into: tree)
                }
            }
            // pg_basebackup runs as the cluster's system user: it must get through to its tree.
            _ = chmod(root, 0o711)
        }
    }

    public var name: String { spec.name }
    public var backendDescription: String {
        if let group { return group.members.map { "\($0.source): \($0.backend.rawValue) (\($0.why))" }.joined(separator: "; ") }
        return "\(store!.backend.rawValue) (\(store!.why))"
    }

    public func list() -> [SnapshotInfo] { group?.list() ?? store!.list() }
    public func info(_ id: Int) throws -> SnapshotInfo { try group?.info(id) ?? store!.info(id) }

    @discardableResult
    public func create(kind: SnapshotInfo.Kind = .single, note: String? = nil, pre: Int? = nil, now: Date = Date()) throws -> SnapshotInfo {
        if let pre {
            let p = try info(pre)
            guard p.kind == .pre else { throw SnapshotError("snapshot \(pre) of \(name) is not a pre snapshot") }
        }
        if let group { return try group.create(kind: kind, note: note, pre: pre, now: now) }
        return try store!.create(kind: kind, note: note, pre: pre, now: now)
    }

    public func remove(_ id: Int) throws {
        if let group { try group.remove(id) } else { try store!.remove(id) }
    }

    /// Files added, changed and removed from `a` to `b` (or to the live data).
    public func diff(_ a: Int, _ b: Int?) throws -> TreeDiff {
        if let group { return try group.diff(a, b) }
        return try store!.diff(a, b)
    }

    /// Where snapshot `id`'s copy is (a directory).
    public func tree(_ id: Int) throws -> String {
        _ = try info(id)
        if let group { return group.members[0].tree(id) }
        return store!.tree(id)
    }

    public func restore(_ id: Int, file path: String) throws {
        guard let group else { throw SnapshotError("\(name) is a \(spec.kind.rawValue) data set: restore it whole (--to PATH for a copy beside it)") }
        try group.restore(id, file: path)
    }

    /// What a whole restore did.
    public struct Restored: Sendable {
        public var safety: SnapshotInfo?
        public var changes: TreeDiff
        public var restarted: [String]
        /// Where a copy was restored to (`to`), and what was checked.
        public var copy: String?
        public var verified: String?
    }

    /// Restores snapshot `id`: in place (services stopped around it, a safety snapshot first)
    /// or, with `to`, as a new copy beside the live data, verified when asked (SQLite's
    /// integrity_check; PostgreSQL started on a private socket and pg_amcheck'ed).
    public func restore(_ id: Int, to: String?, verify: Bool, services: ServiceControl, now: Date = Date()) throws -> Restored {
        let target = try info(id)
        if let to { return try restoreCopy(target, to: to, verify: verify) }
        switch spec.kind {
        case .directory:
            let (safety, changes) = try group!.restore(id, now: now) { copy in try services.around(spec.services, copy) }
            return Restored(safety: safety, changes: changes, restarted: spec.services)
        case .sqlite:
            let db = spec.paths[0], copy = "\(store!.tree(id))/\((db as NSString).lastPathComponent)"
            let check = try SQLiteCopy.integrityCheck(copy)
            guard check == "ok" else { throw SnapshotError("snapshot \(id) of \(name) fails SQLite's integrity_check: \(check); not restored") }
            let safety = try store!.create(kind: .safety, note: "before restoring snapshot \(id)", now: now)
            try services.around(spec.services) { try SQLiteCopy.restore(from: copy, into: db) }
            return Restored(safety: safety, changes: TreeDiff(changed: ["/" + (db as NSString).lastPathComponent]), restarted: spec.services, verified: "integrity_check: ok")
        case .postgresql:
            guard !spec.services.isEmpty else {
                throw SnapshotError("restoring \(name) in place stops its server: name its unit in snapd.toml (services = [\"postgresql@15-main.service\"]), or restore a copy with --to DIR")
            }
            let safety = try store!.create(kind: .safety, note: "before restoring snapshot \(id)", now: now)
            let data = spec.paths[0], tree = store!.tree(id)
            try services.around(spec.services) {
                try SnapshotStore.run("/usr/bin/rsync", SnapshotStore.rsyncCopy + ["--delete",
                                                          "--exclude=/postgresql.conf", "--exclude=/pg_hba.conf", "--exclude=/pg_ident.conf",
                                                                           "--exclude=/postmaster.pid",
                                                          "\(tree)/", "\(data)/"])
            }
            return Restored(safety: safety, changes: TreeDiff(changed: [data]), restarted: spec.services)
        }
    }

    func restoreCopy(_ target: SnapshotInfo, to: String, verify: Bool) throws -> Restored {
        let to = (to as NSString).standardizingPath
        guard to.hasPrefix("/") else { throw SnapshotError("\(to): an absolute path") }
        guard !FileManager.default.fileExists(atPath: to) else { throw SnapshotError("\(to) exists: a copy is restored to a new path") }
        switch spec.kind {
        case .sqlite:
            let copy = "\(store!.tree(target.id))/\((spec.paths[0] as NSString).lastPathComponent)"
            try SQLiteCopy.backup(from: copy, to: to)
            let check = try SQLiteCopy.integrityCheck(to)
            guard check == "ok" else { throw SnapshotError("\(to) fails SQLite's integrity_check: \(check)") }
            return Restored(changes: TreeDiff(added: [to]), restarted: [], copy: to, verified: "integrity_check: ok")
        case .postgresql:
            try SnapshotStore.run("/usr/bin/cp", ["-a", "--reflink=auto", store!.tree(target.id), to])
            // An atomic snapshot was taken under a running server: its lock file names that
            // server, which would keep the copy from starting.
            unlink("\(to)/postmaster.pid")
            let wrote = try PostgresCluster.completeConfiguration(to)
            var said = wrote.isEmpty ? nil : "wrote \(wrote.joined(separator: ", ")) (the cluster's own are outside its data directory)"
            if verify {
                let out = try PostgresCluster.verify(copy: to, systemUser: spec.systemUser, user: spec.user)
                said = [said, "started, WAL replayed, pg_amcheck passed" + (out.isEmpty ? "" : ": \(out)")].compactMap { $0 }.joined(separator: "; ")
            }
            return Restored(changes: TreeDiff(added: [to]), restarted: [], copy: to, verified: said)
        case .directory:
            guard group!.members.count == 1 else { throw SnapshotError("\(name) holds several directories: restore it in place, or one file with --file") }
            try FileManager.default.createDirectory(atPath: to, withIntermediateDirectories: true)
            try SnapshotStore.run("/usr/bin/cp", ["-a", "--reflink=auto", "\(try tree(target.id))/.", "\(to)/"])
            return Restored(changes: TreeDiff(added: [to]), restarted: [], copy: to)
        }
    }
}

/// Stops and starts units around a restore (`PROGRAM stop UNIT...`, `PROGRAM start UNIT...`:
/// systemctl, or a script of the admin's on a system without systemd).
public struct ServiceControl: Sendable {
    public let program: String
    public init(program: String) { self.program = program }

    /// Runs `body` with `units` stopped; starts them again whatever `body` did.
    public func around(_ units: [String], _ body: () throws -> Void) throws {
        guard !units.isEmpty else { return try body() }
        try SnapshotStore.run(program, ["stop"] + units)
        var failure: (any Error)?
        do { try body() } catch { failure = error }
        do { try SnapshotStore.run(program, ["start"] + units) } catch {
            throw SnapshotError("\(failure.map { "\($0); " } ?? "")starting \(units.joined(separator: " ")) again: \(error)")
        }
        if let failure { throw failure }
    }
}
