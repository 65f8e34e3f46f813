import Foundation
import Glibc

/// What differs between two trees: files added, changed and removed, as paths relative to
/// the trees' tops ("/etc/hostname").
public struct TreeDiff: Sendable, Equatable, Codable {
    public var added: [String] = []
    public var changed: [String] = []
    public var removed: [String] = []

    public init(added: [String] = [], changed: [String] = [], removed: [String] = []) {
        self.added = added
        self.changed = changed
        self.removed = removed
    }

    public var isEmpty: Bool { added.isEmpty && changed.isEmpty && removed.isEmpty }

    /// The same difference seen from the other side (b to a).
    public var reversed: TreeDiff { TreeDiff(added: removed, changed: changed, removed: added) }

    /// Every path prefixed with `base` ("/etc" + "/hostname"), for a group of trees.
    public func under(_ base: String) -> TreeDiff {
        let p = base == "/" ? "" : base
        return TreeDiff(added: added.map { p + $0 }, changed: changed.map { p + $0 }, removed: removed.map { p + $0 })
    }

    /// Lines as `diff --brief` readers expect: "A path", "C path", "D path", sorted by path.
    public var lines: [String] {
        (added.map { ("A", $0) } + changed.map { ("C", $0) } + removed.map { ("D", $0) })
            .sorted { $0.1 < $1.1 }.map { "\($0.0) \($0.1)" }
    }

    /// Compares two directory trees without following symbolic links. A file is changed when
    /// its type, mode, owner, size or link target differ, or its content does (compared only
    /// when the modification time differs). Directories are walked, not compared by time or
    /// size (btrfs and XFS count a directory's entries in its size; ext4 does not).
    public static func compare(_ a: String, _ b: String) throws -> TreeDiff {
        var diff = TreeDiff()
        try walk(a, b, "", &diff)
        return diff
    }

    struct Entry: Equatable {
        var type: mode_t
        var mode: mode_t
        var uid: uid_t
        var gid: gid_t
        var size: Int
        var mtime: timespec
        var rdev: dev_t
        var target: String?

        static func == (l: Entry, r: Entry) -> Bool {
            l.type == r.type && l.mode == r.mode && l.uid == r.uid && l.gid == r.gid && l.size == r.size && l.rdev == r.rdev && l.target == r.target
        }
    }

    static func entry(_ path: String) throws -> Entry {
        var st = stat()
        guard lstat(path, &st) == 0 else { throw SystemError("lstat \(path)") }
        var target: String?
        if st.st_mode & S_IFMT == S_IFLNK {
            var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let n = readlink(path, &buf, buf.count - 1)
            if n >= 0 { target = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) }
        }
        return Entry(type: st.st_mode & S_IFMT, mode: st.st_mode & 0o7777, uid: st.st_uid, gid: st.st_gid, size: Int(st.st_size),
                     mtime: st.st_mtim, rdev: st.st_rdev, target: target)
    }

    /// The names in a directory, sorted ("." and ".." left out).
    static func names(_ dir: String) throws -> [String] {
        guard let d = opendir(dir) else { throw SystemError("opendir \(dir)") }
        defer { closedir(d) }
        var out: [String] = []
        while let e = readdir(d) {
            let name = withUnsafePointer(to: e.pointee.d_name) { $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) } }
            if name != "." && name != ".." { out.append(name) }
        }
        return out.sorted()
    }

    private static func walk(_ a: String, _ b: String, _ rel: String, _ diff: inout TreeDiff) throws {
        let left = Set(try names(a + rel)), right = Set(try names(b + rel))
        for name in left.union(right).sorted() {
            let p = rel + "/" + name
            switch (left.contains(name), right.contains(name)) {
            case (true, false):
                diff.removed.append(p)
                if try entry(a + p).type == S_IFDIR { diff.removed.append(contentsOf: try everything(a, p)) }
            case (false, true):
                diff.added.append(p)
                if try entry(b + p).type == S_IFDIR { diff.added.append(contentsOf: try everything(b, p)) }
            default:
                let x = try entry(a + p), y = try entry(b + p)
                if x.type == S_IFDIR && y.type == S_IFDIR {
                    var y = y
                    y.size = x.size
                    if x != y { diff.changed.append(p) }
                    try walk(a, b, p, &diff)
                } else if x != y {
                    diff.changed.append(p)
                    if x.type == S_IFDIR { diff.removed.append(contentsOf: try everything(a, p)) }
                    if y.type == S_IFDIR { diff.added.append(contentsOf: try everything(b, p)) }
                } else if x.type == S_IFREG, x.mtime.tv_sec != y.mtime.tv_sec || x.mtime.tv_nsec != y.mtime.tv_nsec,
                          try !sameContent(a + p, b + p) {
                    diff.changed.append(p)
                }
            }
        }
    }

    private static func everything(_ top: String, _ rel: String) throws -> [String] {
        var out: [String] = []
        for name in try names(top + rel) {
            let p = rel + "/" + name
            out.append(p)
            if try entry(top + p).type == S_IFDIR { out.append(contentsOf: try everything(top, p)) }
        }
        return out
    }

    static func sameContent(_ a: String, _ b: String) throws -> Bool {
        guard let x = FileHandle(forReadingAtPath: a), let y = FileHandle(forReadingAtPath: b) else { throw SystemError("reading \(a) or \(b)") }
        defer { try? x.close(); try? y.close() }
        while true {
            let p = try x.read(upToCount: 1 << 20) ?? Data(), q = try y.read(upToCount: 1 << 20) ?? Data()
            if p != q { return false }
            if p.isEmpty { return true }
        }
    }

    /// A node's changes from its overlay's upper layer: `entries` are (type letter as find's
    /// %y prints it, path relative to the upper directory). An overlayfs whiteout (a character
    /// device) is a removal; anything else is a change where the image has that path and an
    /// addition where it does not. Directories the node only passed through are left out.
    public static func overlay(_ entries: [(type: Character, path: String)], inImage: (String) -> Bool) -> TreeDiff {
        var diff = TreeDiff()
        let byPath = Dictionary(entries.map { ($0.path, $0.type) }, uniquingKeysWith: { a, _ in a })
        let parents = Set(entries.flatMap { e -> [String] in
            var parts = e.path.split(separator: "/").dropLast()
            var out: [String] = []
            while !parts.isEmpty { out.append("/" + parts.joined(separator: "/")); parts = parts.dropLast() }
            return out
        })
        for (rel, type) in byPath.sorted(by: { $0.key < $1.key }) {
            let p = rel.hasPrefix("/") ? rel : "/" + rel
            if type == "c" { diff.removed.append(p); continue }
            let existed = inImage(p)
            if type == "d", existed, parents.contains(p) { continue }
            if type == "d", existed { continue }
            if existed { diff.changed.append(p) } else { diff.added.append(p) }
        }
        return diff
    }
}
