import CLinux
import CMTypes
import Foundation

/// One snapshot: what it is of, how and why it was taken.
public struct SnapshotInfo: Codable, Sendable, Equatable {
    /// Why: by hand, the two sides of a change (apt, cmctl), the timeline, or the safety
    /// snapshot a restore takes first.
    public enum Kind: String, Codable, Sendable, CaseIterable {
        case single, pre, post, timeline, safety
    }

    public var id: Int
    /// "system" or a data set's name from snapd.toml.
    public var dataSet: String
    public var source: String
    public var backend: SnapshotBackend
    public var kind: Kind
    public var created: Date
    /// How long taking it took.
    public var seconds: Double
    public var note: String?
    /// A post snapshot's pre.
    public var pre: Int?

    public init(id: Int, dataSet: String, source: String, backend: SnapshotBackend, kind: Kind, created: Date, seconds: Double,
                note: String? = nil, pre: Int? = nil) {
        self.id = id
        self.dataSet = dataSet
        self.source = source
        self.backend = backend
        self.kind = kind
        self.created = created
        self.seconds = seconds
        self.note = note
        self.pre = pre
    }
}

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

    public init(dataSet: String, source: String, root: String) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: source, isDirectory: &isDir), isDir.boolValue else {
            throw SnapshotError("\(source): no such directory (data set \(dataSet))")
        }
        do {
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw SnapshotError("\(root): \(error.localizedDescription)")
        }
        self.dataSet = dataSet
        self.source = (source as NSString).standardizingPath
        self.root = (root as NSString).standardizingPath
        (backend, why) = try SnapshotBackend.choose(source: self.source, store: self.root)
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

    /// Takes a snapshot of `source` now.
    @discardableResult
    public func create(kind: SnapshotInfo.Kind = .single, note: String? = nil, pre: Int? = nil, now: Date = Date()) throws -> SnapshotInfo {
        removePartials()
        let existing = list()
        // Ids are never given twice, not even the newest's after it was removed: "restore 7"
        // must not mean another snapshot tomorrow.
        let lastFile = "\(root)/last-id"
        let last = (FileManager.default.contents(atPath: lastFile).flatMap { Int(String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) }) ?? 0
        let id = max(last, existing.last?.id ?? 0) + 1
        try replaceFile(lastFile, with: Data("\(id)\n".utf8), mode: 0o600)
        let partial = "\(root)/.partial-\(id)"
        let started = ContinuousClock.now
        do {
            try FileManager.default.createDirectory(atPath: partial, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
            switch backend {
            case .btrfsSubvolume:
                try Self.run("/usr/bin/btrfs", ["subvolume", "snapshot", "-r", source, "\(partial)/tree"])
            case .reflink:
                try FileManager.default.createDirectory(atPath: "\(partial)/tree", withIntermediateDirectories: false)
                try Self.run("/usr/bin/cp", ["-a", "--reflink=always", "\(source)/.", "\(partial)/tree/"])
            case .hardlink:
                let previous = existing.last.map { ["--link-dest=\(tree($0.id))"] } ?? []
                try Self.run("/usr/bin/rsync", ["-aHAX", "--numeric-ids"] + previous + ["\(source)/", "\(partial)/tree/"])
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
        return try TreeDiff.compare(tree(a), b.map(tree) ?? source)
    }

    /// Puts one file (or directory, or link) back as it was in snapshot `id`: copied beside and
    /// renamed over, so that a reader sees the old or the restored one. `path` is relative to
    /// the source ("clustermaker/pxed.toml").
    public func restore(_ id: Int, file path: String) throws {
        _ = try info(id)
        let parts = path.split(separator: "/").map(String.init)
        guard !parts.isEmpty, !parts.contains(".."), !parts.contains(".") else { throw SnapshotError("\"\(path)\": a path inside \(source), without . or ..") }
        let rel = parts.joined(separator: "/"), from = "\(tree(id))/\(rel)", to = "\(source)/\(rel)"
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
        let changes = try TreeDiff.compare(source, tree(id))
        let safety = try create(kind: .safety, note: "before restoring snapshot \(target.id)", now: now)
        try Self.run("/usr/bin/rsync", ["-aHAX", "--numeric-ids", "--delete", "\(tree(id))/", "\(source)/"])
        return (safety, changes)
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
        guard r.succeeded else { throw SnapshotError("\((program as NSString).lastPathComponent) \(args.first ?? ""): \(r.failure(program, timeout: nil))") }
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
