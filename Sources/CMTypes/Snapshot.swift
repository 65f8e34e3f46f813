import Foundation

// cm-snapd's records, here so that its messages (CMWire) and its store (CMSnap) share them.

/// How a snapshot of a directory is made, from what its filesystem offers (issue 28):
/// - `btrfsSubvolume`: a read-only subvolume snapshot, O(1) whatever the tree's size (the
///   directory must be a subvolume);
/// - `reflink`: a copy whose files share their blocks with the source (XFS with reflink=1,
///   btrfs outside a subvolume): `cp -a --reflink=always`;
/// - `hardlink`: a tree of hard links to the previous snapshot's unchanged files and copies of
///   the changed ones (`rsync -a --link-dest`), anywhere else.
/// Databases are snapshotted by their own tools instead:
/// - `sqliteBackup`: SQLite's online backup API (a consistent copy while writers go on);
/// - `pgBasebackup`: PostgreSQL's pg_basebackup with the WAL streamed alongside (the server
///   serves throughout; the copy replays to a consistent state when started).
public enum SnapshotBackend: String, Sendable, Codable, CaseIterable {
    case btrfsSubvolume = "btrfs"
    case reflink
    case hardlink
    case sqliteBackup = "sqlite-backup"
    case pgBasebackup = "pg_basebackup"
}

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

