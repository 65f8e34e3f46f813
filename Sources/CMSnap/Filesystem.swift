import CLinux
import CMTypes
import Foundation

/// The filesystem a path is on, by statfs(2)'s f_type.
public enum FilesystemKind: Sendable, Equatable {
    case btrfs, xfs, ext4, tmpfs, other(UInt)

    /// linux/magic.h
    static let btrfsMagic: UInt = 0x9123_683E, xfsMagic: UInt = 0x5846_5342, ext4Magic: UInt = 0xEF53, tmpfsMagic: UInt = 0x0102_1994

    public init(magic: UInt) {
        switch magic {
        case Self.btrfsMagic: self = .btrfs
        case Self.xfsMagic: self = .xfs
        case Self.ext4Magic: self = .ext4
        case Self.tmpfsMagic: self = .tmpfs
        default: self = .other(magic)
        }
    }

    public static func of(_ path: String) throws -> FilesystemKind {
        var s = statfs()
        guard statfs(path, &s) == 0 else { throw SnapshotError("\(path): \(String(cString: strerror(errno)))") }
        return FilesystemKind(magic: UInt(bitPattern: Int(s.f_type)))
    }

    public var name: String {
        switch self {
        case .btrfs: "btrfs"
        case .xfs: "xfs"
        case .ext4: "ext4"
        case .tmpfs: "tmpfs"
        case .other(let m): "0x" + String(m, radix: 16)
        }
    }
}

public struct SnapshotError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension SnapshotBackend {
    /// The best backend for `source` whose snapshots go under `store`: btrfs subvolume
    /// snapshots when both are on one btrfs and the source is a subvolume (inode 256), reflink
    /// copies when a clone between them works (tried with FICLONE on a probe file), hard
    /// links otherwise. `why` says what decided, for the logs and `cmctl snapshot show`.
    public static func choose(source: String, store: String) throws -> (backend: SnapshotBackend, why: String) {
        let a = try FilesystemKind.of(source), b = try FilesystemKind.of(store)
        var st = stat()
        guard stat(source, &st) == 0 else { throw SnapshotError("\(source): \(String(cString: strerror(errno)))") }
        // A subvolume's root directory is inode 256 (BTRFS_FIRST_FREE_OBJECTID).
        if a == .btrfs, b == .btrfs, st.st_ino == 256 { return (.btrfsSubvolume, "\(source) is a btrfs subvolume") }
        if canReflink(from: source, to: store) { return (.reflink, "\(a.name) clones files from \(source) into \(store) (reflink)") }
        return (.hardlink, "\(a.name) at \(source) offers neither a subvolume snapshot nor reflink into \(store): hard-link trees")
    }

    /// Whether FICLONE works from a file in `from` to one in `to` (both probe files, removed).
    static func canReflink(from: String, to: String) -> Bool {
        let src = "\(from)/.cm-reflink-probe-\(getpid())", dst = "\(to)/.cm-reflink-probe-\(getpid())"
        defer { unlink(src); unlink(dst) }
        guard FileManager.default.createFile(atPath: src, contents: Data(repeating: 0x2a, count: 4096)) else { return false }
        let i = open(src, O_RDONLY), o = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        defer { if i >= 0 { close(i) }; if o >= 0 { close(o) } }
        guard i >= 0, o >= 0 else { return false }
        // FICLONE = _IOW(0x94, 9, int)
        return ioctl(o, 0x4004_9409, i) == 0
    }
}
