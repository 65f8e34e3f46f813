import CMTypes
import Foundation

/// The snapshots of several directories taken together under one id (a restore point of
/// /etc and /var/lib/clustermaker): one `SnapshotStore` per directory under
/// ROOT/<directory with "/" as "_">, each with the backend its own filesystem offers. An id is
/// listed only when every member holds it, so a group cut short by a crash is never listed.
public struct SnapshotGroup: Sendable {
    public let name: String
    public let root: String
    public let members: [SnapshotStore]

    public init(name: String, paths: [String], root: String, excluding: [String] = []) throws {
        guard !paths.isEmpty else { throw SnapshotError("data set \(name) has no paths") }
        try SnapshotStore.makeRoot(root)
        self.name = name
        self.root = (root as NSString).standardizingPath
        members = try paths.map { path in
            try SnapshotStore(dataSet: name, source: path, root: "\(root)/\(Self.key(path))", excluding: excluding + [root])
        }
    }

    /// "/var/lib/clustermaker" → "var_lib_clustermaker"; "/" → "root".
    static func key(_ path: String) -> String {
        let p = (path as NSString).standardizingPath.split(separator: "/").joined(separator: "_")
        return p.isEmpty ? "root" : p
    }

    public var sources: [String] { members.map(\.source) }

    /// Ids every member holds, oldest first.
    public func list() -> [SnapshotInfo] {
        var lists = members.map { Dictionary(uniqueKeysWithValues: $0.list().map { ($0.id, $0) }) }
        guard let first = lists.first else { return [] }
        lists.removeFirst()
        return first.keys.sorted().compactMap { id in
            guard lists.allSatisfy({ $0[id] != nil }) else { return nil }
            return combined(first[id]!, lists.map { $0[id]! })
        }
    }

    /// One record for the group: the first member's, with every source and the time all took.
    func combined(_ first: SnapshotInfo, _ others: [SnapshotInfo]) -> SnapshotInfo {
        var info = first
        info.source = ([first] + others).map(\.source).joined(separator: " ")
        info.seconds = ([first] + others).map(\.seconds).reduce(0, +)
        return info
    }

    public func info(_ id: Int) throws -> SnapshotInfo {
        let infos = try members.map { try $0.info(id) }
        return combined(infos[0], Array(infos.dropFirst()))
    }

    @discardableResult
    public func create(kind: SnapshotInfo.Kind = .single, note: String? = nil, pre: Int? = nil, now: Date = Date()) throws -> SnapshotInfo {
        let lastFile = "\(root)/last-id"
        let newest = members.flatMap { $0.list().map(\.id) }.max() ?? 0
        let id = max(SnapshotStore.readInt(lastFile) ?? 0, newest) + 1
        try replaceFile(lastFile, with: Data("\(id)\n".utf8), mode: 0o600)
        var made: [SnapshotStore] = []
        var infos: [SnapshotInfo] = []
        do {
            for m in members {
                infos.append(try m.create(id: id, kind: kind, note: note, pre: pre, now: now))
                made.append(m)
            }
        } catch {
            for m in made { try? m.remove(id) }
            throw error
        }
        return combined(infos[0], Array(infos.dropFirst()))
    }

    public func remove(_ id: Int) throws {
        _ = try info(id)
        for m in members { try m.remove(id) }
    }

    /// Paths are absolute ("/etc/hostname").
    public func diff(_ a: Int, _ b: Int?) throws -> TreeDiff {
        _ = try info(a)
        if let b { _ = try info(b) }
        var all = TreeDiff()
        for m in members {
            let d = try m.diff(a, b).under(m.source)
            all.added += d.added
            all.changed += d.changed
            all.removed += d.removed
        }
        return all
    }

    /// One file back; `path` is absolute, inside one of the group's directories.
    public func restore(_ id: Int, file path: String) throws {
        _ = try info(id)
        let p = (path as NSString).standardizingPath
        guard let m = members.sorted(by: { $0.source.count > $1.source.count }).first(where: { p.hasPrefix($0.source == "/" ? "/" : $0.source + "/") }) else {
            throw SnapshotError("\(path) is not in \(name)'s snapshots (they hold \(sources.joined(separator: ", ")))")
        }
        try m.restore(id, file: String(p.dropFirst(m.source == "/" ? 1 : m.source.count + 1)))
    }

    /// Every directory back as snapshot `id` holds it, after a safety snapshot of all of them;
    /// `around` runs the copying (a data set's services stopped around it).
    public func restore(_ id: Int, now: Date = Date(), around: (() throws -> Void) throws -> Void = { try $0() }) throws
        -> (safety: SnapshotInfo, changes: TreeDiff) {
        let target = try info(id)
        let changes = try diff(id, nil).reversed
        let safety = try create(kind: .safety, note: "before restoring snapshot \(target.id)", now: now)
        try around { for m in members { try m.restoreTree(id) } }
        return (safety, changes)
    }
}
