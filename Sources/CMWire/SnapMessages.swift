import CMTypes
import Foundation

// cm-snapd: restore points of the master's state and online snapshots of data sets.
extension MessageType {
    /// Every data set and its snapshots (body `SnapshotListRequest`, reply `SnapshotListReply`).
    public static let snapshotList = "snapshot.list"
    /// One snapshot (body `SnapshotRef`, reply `SnapshotShowReply`).
    public static let snapshotShow = "snapshot.show"
    /// Takes one now (body `SnapshotCreateRequest`, reply `SnapshotInfo`).
    public static let snapshotCreate = "snapshot.create"
    /// Body `SnapshotRef`, reply `Empty`.
    public static let snapshotRemove = "snapshot.remove"
    /// Body `SnapshotDiffRequest`, reply `TreeDiff`.
    public static let snapshotDiff = "snapshot.diff"
    /// Body `SnapshotRestoreRequest`, reply `SnapshotRestoreReply`.
    public static let snapshotRestore = "snapshot.restore"
    /// Events on topic `snapshot`: body `SnapshotEvent`.
    public static let snapshotCreated = "snapshot.created"
    public static let snapshotRemoved = "snapshot.removed"
}

extension Topic {
    public static let snapshot = "snapshot"
}

public struct SnapshotListRequest: Codable, Sendable, Equatable {
    /// One data set's, or every one's when nil.
    public var dataSet: String?
    public init(dataSet: String? = nil) { self.dataSet = dataSet }
}

public struct SnapshotSetStatus: Codable, Sendable, Equatable {
    public var name: String
    /// "directory", "sqlite", "postgresql".
    public var kind: String
    public var paths: [String]
    /// How its snapshots are made, and why (the filesystem or engine that decided).
    public var backend: String
    public var timeline: Bool
    public var snapshots: [SnapshotInfo]
    /// Why the data set cannot be snapshotted now (its directory missing, …).
    public var problem: String?
    public init(name: String, kind: String, paths: [String], backend: String, timeline: Bool, snapshots: [SnapshotInfo], problem: String? = nil) {
        self.name = name
        self.kind = kind
        self.paths = paths
        self.backend = backend
        self.timeline = timeline
        self.snapshots = snapshots
        self.problem = problem
    }
}

public struct SnapshotListReply: Codable, Sendable, Equatable {
    public var sets: [SnapshotSetStatus]
    public var store: String
    /// When the timeline takes its next snapshots (nil: the timeline is off).
    public var nextTimeline: Date?
    public init(sets: [SnapshotSetStatus], store: String, nextTimeline: Date?) {
        self.sets = sets
        self.store = store
        self.nextTimeline = nextTimeline
    }
}

public struct SnapshotRef: Codable, Sendable, Equatable {
    public var dataSet: String
    public var id: Int
    public init(dataSet: String, id: Int) {
        self.dataSet = dataSet
        self.id = id
    }
}

public struct SnapshotShowReply: Codable, Sendable, Equatable {
    public var info: SnapshotInfo
    /// Where its copy is on the master (read-only for a btrfs snapshot).
    public var tree: String
    public var backend: String
    public init(info: SnapshotInfo, tree: String, backend: String) {
        self.info = info
        self.tree = tree
        self.backend = backend
    }
}

public struct SnapshotCreateRequest: Codable, Sendable, Equatable {
    public var dataSet: String
    public var kind: SnapshotInfo.Kind
    public var note: String?
    /// For a post snapshot: its pre.
    public var pre: Int?
    /// Who asked ("root via cmctl", "admin via the console"), for the log.
    public var requestedBy: String?
    public init(dataSet: String, kind: SnapshotInfo.Kind = .single, note: String? = nil, pre: Int? = nil, requestedBy: String? = nil) {
        self.dataSet = dataSet
        self.kind = kind
        self.note = note
        self.pre = pre
        self.requestedBy = requestedBy
    }
}

public struct SnapshotDiffRequest: Codable, Sendable, Equatable {
    public var dataSet: String
    public var from: Int
    /// Nil: the live data.
    public var to: Int?
    public init(dataSet: String, from: Int, to: Int?) {
        self.dataSet = dataSet
        self.from = from
        self.to = to
    }
}

public struct SnapshotRestoreRequest: Codable, Sendable, Equatable {
    public var dataSet: String
    public var id: Int
    /// One file (absolute path) instead of the whole data set.
    public var file: String?
    /// A copy restored to this new path instead of in place.
    public var to: String?
    /// The copy checked (SQLite integrity_check; PostgreSQL started and pg_amcheck'ed).
    public var verify: Bool
    public var requestedBy: String?
    public init(dataSet: String, id: Int, file: String? = nil, to: String? = nil, verify: Bool = false, requestedBy: String? = nil) {
        self.dataSet = dataSet
        self.id = id
        self.file = file
        self.to = to
        self.verify = verify
        self.requestedBy = requestedBy
    }
}

public struct SnapshotRestoreReply: Codable, Sendable, Equatable {
    /// The safety snapshot taken first (in-place restores).
    public var safety: SnapshotInfo?
    public var changes: TreeDiff
    /// Units stopped before and started after.
    public var restarted: [String]
    public var copy: String?
    public var verified: String?
    public init(safety: SnapshotInfo?, changes: TreeDiff, restarted: [String], copy: String?, verified: String?) {
        self.safety = safety
        self.changes = changes
        self.restarted = restarted
        self.copy = copy
        self.verified = verified
    }
}

/// `snapshot.created` / `snapshot.removed`: what a standby master (and the console) follow.
public struct SnapshotEvent: Codable, Sendable, Equatable {
    public var dataSet: String
    public var info: SnapshotInfo
    public init(dataSet: String, info: SnapshotInfo) {
        self.dataSet = dataSet
        self.info = info
    }
}
