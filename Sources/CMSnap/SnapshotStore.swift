import CLinux
import CMTypes
import Foundation

/// The snapshots of one directory, kept under `root`:
///   ROOT/N/info.json   what SnapshotInfo says
///   ROOT/N/tree        the copy (a read-only btrfs subvolume, a reflink copy, or a tree of
///                      hard links to the previous snapshot's unchanged files)
/// A snapshot is made in ROOT/.partial-N and renamed to ROOT/N only when whole: one cut short
/// (a crash, a full disk) is never listed, and the next `create` removes it. ROOT/last-id
/// keeps ids from being given twice. The engines are
/// the system's: btrfs-progs, coreutils' cp --reflink, rsync --link-dest.
public struct SnapshotStore: Sendable {
    public let dataSet: String
    public let source: String
    public let root: String
    public let backend: SnapshotBackend
    /// What decided the backend (said by `cmctl snapshot show` and in the log).
    public let why: String

    /// Paths under `source` (relative, no leading "/") left out of every snapshot, and kept
    /// as they are by a whole restore: the store itself when it lies inside the source, and
    /// what snapd.toml's `exclude` names (a GlusterFS brick, caches).
    public let excludes: [String]
    /// Makes the tree itself instead of the backend's copy (a database's own backup tool).
    let produce: (@Sendable (_ tree: String) throws -> Void)?

    /// A directory's snapshots, by the best backend its filesystem offers.
    public init(dataSet: String, source: String, root: String, excluding: [String] = []) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: source, isDirectory: &isDir), isDir.boolValue else {
            throw SnapshotError("\(source): no such directory (data set \(dataSet))")
        }
        try Self.makeRoot(root)
        self.dataSet = dataSet
        self.source = (source as NSString).standardizingPath
        self.root = (root as NSString).standardizingPath
        excludes = Self.relative(excluding + [self.root], under: self.source)
        produce = nil
        var (backend, why) = try SnapshotBackend.choose(source: self.source, store: self.root)
        // A path that is a subvolume of its own or another filesystem (a different st_dev:
        // btrfs gives each subvolume its own) is not in a subvolume snapshot anyway.
        var home = stat()
        let src = self.source, all = excludes
        let inside = stat(src, &home) == 0 ? all.filter { rel in
            var st = stat()
            return lstat("\(src)/\(rel)", &st) == 0 && st.st_dev == home.st_dev
        } : all
        if backend == .btrfsSubvolume, let first = inside.first {
            // A subvolume snapshot takes everything in the subvolume: leaving something out
            // takes a copy (or making it a subvolume of its own, as snapper asks).
            if SnapshotBackend.canReflink(from: self.source, to: self.root) {
                (backend, why) = (.reflink, "\(self.source) is a btrfs subvolume, but /\(first) is left out of it: reflink copies")
            } else {
                (backend, why) = (.hardlink, "\(self.source) is a btrfs subvolume, but /\(first) is left out of it: hard-link trees")
            }
        }
        (self.backend, self.why) = (backend, why)
    }

    /// Snapshots made by `produce` (a database's online backup into the tree it is given);
    /// `source` is what they are of (a database file, a data directory).
    public init(dataSet: String, source: String, root: String, engine: SnapshotBackend, why: String,
                produce: @escaping @Sendable (_ tree: String) throws -> Void) throws {
        try Self.makeRoot(root)
        self.dataSet = dataSet
        self.source = (source as NSString).standardizingPath
        self.root = (root as NSString).standardizingPath
        excludes = []
        backend = engine
        self.why = why
        self.produce = produce
    }

    static func makeRoot(_ root: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw SnapshotError("\(root): \(error.localizedDescription)")
        }
    }

    /// The paths of `paths` that lie strictly inside `base`, relative to it.
    static func relative(_ paths: [String], under base: String) -> [String] {
        let prefix = base == "/" ? "/" : base + "/"
        return Array(Set(paths.map { ($0 as NSString).standardizingPath }.filter { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) })).sorted()
    }

    func isExcluded(_ rel: String) -> Bool {
        let rel = rel.hasPrefix("/") ? String(rel.dropFirst()) : rel
        return excludes.contains { rel == $0 || rel.hasPrefix($0 + "/") }
    }

    func directory(_ id: Int) -> String { "\(root)/\(id)" }
    public func tree(_ id: Int) -> String { "\(root)/\(id)/tree" }

    /// Every whole snapshot, oldest first.
    public func list() -> [SnapshotInfo] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        return names.compactMap { Int($0) }.sorted().compactMap { try? info($0) }
    }

    public func info(_ id: Int) throws -> SnapshotInfo {
        guard let data = FileManager.default.contents(atPath: "\(directory(id))/info.json") else {
            throw SnapshotError("no snapshot \(id) of \(dataSet)")
        }
        do { return try JSONDecoder.snapshot.decode(SnapshotInfo.self, from: data) } catch {
            throw SnapshotError("\(directory(id))/info.json: \(error)")
        }
    }

    /// Takes a snapshot of `source` now, numbered `id` when given (a group's members share
    /// their ids) or the next one.
    @discardableResult
    public func create(id wanted: Int? = nil, kind: SnapshotInfo.Kind = .single, note: String? = nil, pre: Int? = nil, now: Date = Date()) throws -> SnapshotInfo {
        removePartials()
        let existing = list()
        // Ids are never given twice, not even the newest's after it was removed: "restore 7"
        // must not mean another snapshot tomorrow.
        let lastFile = "\(root)/last-id"
        let last = Self.readInt(lastFile) ?? 0
        let id = wanted ?? max(last, existing.last?.id ?? 0) + 1
        guard id > (existing.last?.id ?? 0), !FileManager.default.fileExists(atPath: directory(id)) else {
            throw SnapshotError("snapshot \(id) of \(dataSet) exists")
        }
        try replaceFile(lastFile, with: Data("\(max(id, last))\n".utf8), mode: 0o600)
        let partial = "\(root)/.partial-\(id)"
        let started = ContinuousClock.now
        do {
            try FileManager.default.createDirectory(atPath: partial, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
            let tree = "\(partial)/tree"
            if let produce {
                try produce(tree)
            } else {
                switch backend {
                case .btrfsSubvolume:
                    try Self.run("/usr/bin/btrfs", ["subvolume", "snapshot", "-r", source, tree])
                case .reflink:
                    try copyReflinks(source, tree, rel: "")
                default:
                    let previous = existing.last.map { ["--link-dest=\(self.tree($0.id))"] } ?? []
                    try Self.run("/usr/bin/rsync", Self.rsyncCopy + rsyncExcludes + previous + ["\(source)/", "\(tree)/"])
                }
                // A copy of a live SQLite file is not a database: those in the tree are made
                // again with SQLite's online backup (an atomic subvolume snapshot needs not).
                if backend != .btrfsSubvolume { try SQLiteCopy.refreshDatabases(in: tree, from: source, skip: isExcluded) }
            }
            let took = ContinuousClock.now - started
            let info = SnapshotInfo(id: id, dataSet: dataSet, source: source, backend: backend, kind: kind, created: now,
                                    seconds: Double(took.components.seconds) + Double(took.components.attoseconds) / 1e18, note: note, pre: pre)
            try replaceFile("\(partial)/info.json", with: try JSONEncoder.snapshot.encode(info), mode: 0o600)
            guard rename(partial, directory(id)) == 0 else { throw SnapshotError("renaming \(partial): \(String(cString: strerror(errno)))") }
            return info
        } catch {
            removeTree(partial)
            throw error
        }
    }

    /// rsync as the snapshots need it: hard links, ACLs and extended attributes kept, ids
    /// as numbers, and files compared by content (--checksum), not by size and time: a file
    /// changed within the second of the previous snapshot, its size unchanged, must not be
    /// linked to the old one, nor skipped by a restore.
    static let rsyncCopy = ["-aHAX", "--numeric-ids", "--checksum"]

    var rsyncExcludes: [String] { excludes.map { "--exclude=/\($0)" } }

    /// `cp -a --reflink=always` of `from` into `to`, but for the excluded paths: a directory
    /// with nothing excluded below it is copied whole, one with an exclusion inside is made
    /// with the source's owner, mode and times and its entries copied one by one.
    func copyReflinks(_ from: String, _ to: String, rel: String) throws {
        guard excludes.contains(where: { rel.isEmpty || $0.hasPrefix(rel + "/") }) else {
            if rel.isEmpty {
                try FileManager.default.createDirectory(atPath: to, withIntermediateDirectories: false)
                try Self.run("/usr/bin/cp", ["-a", "--reflink=always", "\(from)/.", "\(to)/"])
            } else {
                try Self.run("/usr/bin/cp", ["-a", "--reflink=always", from, to])
            }
            return
        }
        try FileManager.default.createDirectory(atPath: to, withIntermediateDirectories: false)
        let names = try FileManager.default.contentsOfDirectory(atPath: from).sorted()
        for name in names {
            let childRel = rel.isEmpty ? name : "\(rel)/\(name)"
            if isExcluded(childRel) { continue }
            var st = stat()
            if lstat("\(from)/\(name)", &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR {
                try copyReflinks("\(from)/\(name)", "\(to)/\(name)", rel: childRel)
            } else {
                try Self.run("/usr/bin/cp", ["-a", "--reflink=always", "\(from)/\(name)", "\(to)/\(name)"])
            }
        }
        // The directory's own attributes last: its entries' copies changed its times.
        try Self.run("/usr/bin/cp", ["-a", "--attributes-only", "--no-dereference", "-T", from, to])
    }

    static func readInt(_ path: String) -> Int? {
        FileManager.default.contents(atPath: path).flatMap { Int(String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// Removes snapshot `id` (a subvolume is deleted as one).
    public func remove(_ id: Int) throws {
        _ = try info(id)
        // Out of the list first: a removal cut short leaves a partial, not a half snapshot.
        let doomed = "\(root)/.partial-removing-\(id)"
        guard rename(directory(id), doomed) == 0 else { throw SnapshotError("removing snapshot \(id): \(String(cString: strerror(errno)))") }
        removeTree(doomed)
    }

    /// What changed from snapshot `a` to snapshot `b`, or to the live source when `b` is nil.
    public func diff(_ a: Int, _ b: Int?) throws -> TreeDiff {
        _ = try info(a)
        if let b { _ = try info(b) }
        var d = try TreeDiff.compare(tree(a), b.map(tree) ?? source)
        // The live source still holds what its snapshots leave out, and its databases'
        // write-ahead logs (their snapshot copies are single files).
        let noise: (String) -> Bool = { b == nil && (self.isExcluded($0) || SQLiteCopy.isSidecar($0)) }
        d.added.removeAll(where: noise)
        d.changed.removeAll(where: noise)
        d.removed.removeAll(where: noise)
        return d
    }

    /// Puts one file (or directory, or link) back as it was in snapshot `id`: copied beside and
    /// renamed over, so that a reader sees the old or the restored one. `path` is relative to
    /// the source ("clustermaker/pxed.toml").
    public func restore(_ id: Int, file path: String) throws {
        _ = try info(id)
        let parts = path.split(separator: "/").map(String.init)
        guard !parts.isEmpty, !parts.contains(".."), !parts.contains(".") else { throw SnapshotError("\"\(path)\": a path inside \(source), without . or ..") }
        let rel = parts.joined(separator: "/")
        if isExcluded(rel) { throw SnapshotError("/\(rel) is left out of \(dataSet)'s snapshots") }
        let from = "\(tree(id))/\(rel)", to = "\(source)/\(rel)"
        var st = stat()
        guard lstat(from, &st) == 0 else { throw SnapshotError("snapshot \(id) has no \(rel)") }
        let parent = (to as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
        let temp = "\(parent)/.\(parts.last!).cm-restore-\(getpid())"
        removeTree(temp)
        try Self.run("/usr/bin/cp", ["-a", "--reflink=auto", from, temp])
        if (st.st_mode & S_IFMT) == S_IFDIR { removeTree(to) }
        guard rename(temp, to) == 0 else {
            let e = String(cString: strerror(errno))
            removeTree(temp)
            throw SnapshotError("restoring \(to): \(e)")
        }
    }

    /// Makes the source what snapshot `id` holds (files added since are removed), after a
    /// safety snapshot of the source as it is. Returns the safety snapshot and what changed.
    public func restore(_ id: Int, now: Date = Date()) throws -> (safety: SnapshotInfo, changes: TreeDiff) {
        let target = try info(id)
        let changes = try diff(id, nil).reversed
        let safety = try create(kind: .safety, note: "before restoring snapshot \(target.id)", now: now)
        try restoreTree(id)
        return (safety, changes)
    }

    /// The source made what snapshot `id` holds, the excluded paths left as they are (the
    /// caller took the safety snapshot).
    func restoreTree(_ id: Int) throws {
        try Self.run("/usr/bin/rsync", Self.rsyncCopy + ["--delete"] + rsyncExcludes + ["\(tree(id))/", "\(source)/"])
    }

    /// The partial snapshots and removals a crash left.
    func removePartials() {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [] where name.hasPrefix(".partial-") {
            removeTree("\(root)/\(name)")
        }
    }

    /// Removes a snapshot's directory; its tree may be a read-only subvolume.
    func removeTree(_ path: String) {
        let tree = "\(path)/tree"
        var st = stat()
        if backend == .btrfsSubvolume, lstat(tree, &st) == 0, st.st_ino == 256 {
            _ = try? ChildProcess.run("/usr/bin/btrfs", ["subvolume", "delete", tree])
        }
        try? FileManager.default.removeItem(atPath: path)
    }

    static func run(_ program: String, _ args: [String]) throws {
        let r: ChildProcess.Result
        do { r = try ChildProcess.run(program, args) } catch { throw SnapshotError("cannot run \(program): \(error)") }
        guard r.succeeded else {
            throw SnapshotError("\((program as NSString).lastPathComponent) \(args.first ?? ""): \(Self.brief(r.failure(program, timeout: nil)))")
        }
    }

    /// A program's complaint cut to what a reply and a log line can carry: rsync on a full
    /// disk says "No space left on device" once per file, megabytes of it.
    static func brief(_ text: String) -> String {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: true).map { $0.count > 300 ? String($0.prefix(300)) + "…" : String($0) }
        guard lines.count > 4 else { return lines.joined(separator: "\n") }
        return (lines.prefix(3) + ["… \(lines.count - 4) more lines …", lines.last!]).joined(separator: "\n")
    }
}

extension JSONEncoder {
    static var snapshot: JSONEncoder {
        let e = JSONEncoder()
        e.dateEncodingStrategy = .iso8601
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        return e
    }
}

extension JSONDecoder {
    static var snapshot: JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .iso8601
        return d
    }
}
