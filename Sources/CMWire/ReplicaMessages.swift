import CMTypes
import Foundation

// cm-replicad: the cluster filesystem (GlusterFS volume) and its NFS exports.
extension MessageType {
    public static let volumeStatus = "volume.status"
    /// Rewrites ganesha's exports from the image store now (cmctl after a build or removal).
    public static let exportsSync = "exports.sync"
    /// Whether the volume is whole as this master sees it (reply `VolumeSync`); also the event
    /// on topic `volume` each time that changes. cm-vipd holds preemption until it is
    /// (`preempt_after_sync`).
    public static let volumeSync = "volume.sync"
}

extension Topic {
    public static let volume = "volume"
}

/// The volume as one master sees it, for taking the VIP back: whole when every brick is
/// online, nothing is left to heal, nothing is in split brain, and this master's own clients
/// (its FUSE mount, its ganesha) are connected to every brick. Until then a master that serves
/// the nodes may write to a brick that lacks the other's writes (a split brain).
public struct VolumeSync: Codable, Sendable, Equatable {
    public var whole: Bool
    /// Why not, naming the brick ("10.0.0.2:/bricks/cm: 3 entries to heal"); nil when whole.
    public var reason: String?
    /// When this master last found it so.
    public var checked: Date
    public init(whole: Bool, reason: String?, checked: Date) {
        self.whole = whole
        self.reason = reason
        self.checked = checked
    }
}

public struct VolumeBrick: Codable, Sendable, Equatable {
    public var brick: String
    public var online: Bool
    /// Replicated volumes: entries this brick holds that a replica still lacks (heal info), and
    /// those in split brain. Nil for a volume that is not replicated.
    public var healPending: Int?
    public var splitBrain: Int?
    public init(brick: String, online: Bool, healPending: Int? = nil, splitBrain: Int? = nil) {
        self.brick = brick
        self.online = online
        self.healPending = healPending
        self.splitBrain = splitBrain
    }
}

public struct VolumeStatusReply: Codable, Sendable, Equatable {
    public var volume: String
    /// "Started", "Stopped", "Created", or "missing".
    public var state: String
    public var type: String
    public var replicaCount: Int
    public var bricks: [VolumeBrick]
    public var mount: String
    public var mounted: Bool
    public var pingTimeoutSeconds: Int?
    public var exportsFile: String
    public var exports: Int
    public var lastReload: Date?
    /// The last thing that went wrong, until it works again.
    public var problem: String?
    /// Whether the volume is whole as this master sees it, as last checked.
    public var sync: VolumeSync?

    public init(volume: String, state: String, type: String, replicaCount: Int, bricks: [VolumeBrick], mount: String, mounted: Bool,
                pingTimeoutSeconds: Int?, exportsFile: String, exports: Int, lastReload: Date?, problem: String?) {
        self.volume = volume
        self.state = state
        self.type = type
        self.replicaCount = replicaCount
        self.bricks = bricks
        self.mount = mount
        self.mounted = mounted
        self.pingTimeoutSeconds = pingTimeoutSeconds
        self.exportsFile = exportsFile
        self.exports = exports
        self.lastReload = lastReload
        self.problem = problem
    }
}

public struct ExportsSyncReply: Codable, Sendable, Equatable {
    public var exports: Int
    /// The exports changed and ganesha was told to reload them.
    public var reloaded: Bool
    public init(exports: Int, reloaded: Bool) {
        self.exports = exports
        self.reloaded = reloaded
    }
}

// cm-replicad: the daemons' SQLite state, replicated from the active master through the volume.
extension MessageType {
    /// This master's replication: role, epoch, each database's copy, the other masters' replicas.
    public static let stateStatus = "state.status"
    /// A daemon whose master became active waits here until its database holds the newest
    /// replicated state (body `StateReadyRequest`, reply `StateReadyReply`).
    public static let stateReady = "state.ready"
}

public struct StateReadyRequest: Codable, Sendable, Equatable {
    /// The database's name in replicad.toml ("pxed").
    public var database: String
    public init(database: String) { self.database = database }
}

public struct StateReadyReply: Codable, Sendable, Equatable {
    /// The master whose replica was restored into the database; nil when the local database
    /// was already the newest (or there is no replica yet).
    public var restoredFrom: String?
    public var epoch: Epoch?
    /// When that replica was copied on its master: the state is as of then.
    public var copied: Date?
    public var message: String
    public init(restoredFrom: String?, epoch: Epoch?, copied: Date?, message: String) {
        self.restoredFrom = restoredFrom
        self.epoch = epoch
        self.copied = copied
        self.message = message
    }
}

/// One database as this master replicates it.
public struct DatabaseReplication: Codable, Sendable, Equatable {
    public var name: String
    public var path: String
    /// The last copy this master published (active) or the newest one it could restore (standby).
    public var copied: Date?
    public var bytes: Int?
    /// How long the last copy took, from seeing the commit to the file on the volume.
    public var copySeconds: Double?
    /// A commit seen and not yet on the volume since then: the replication lag.
    public var pendingSince: Date?
    public var problem: String?
    public init(name: String, path: String, copied: Date?, bytes: Int?, copySeconds: Double? = nil, pendingSince: Date?, problem: String?) {
        self.name = name
        self.path = path
        self.copied = copied
        self.bytes = bytes
        self.copySeconds = copySeconds
        self.pendingSince = pendingSince
        self.problem = problem
    }
}

/// A master's replica directory on the volume (its meta.json).
public struct MasterReplica: Codable, Sendable, Equatable {
    public var master: String
    public var epoch: Epoch
    /// When this master became active at that epoch.
    public var since: Date
    /// Its last copy.
    public var updated: Date
    public var databases: [String: Date]
    /// When it left the active role after its last copy (nil: active, or it died).
    public var handedOver: Date?
    public init(master: String, epoch: Epoch, since: Date, updated: Date, databases: [String: Date], handedOver: Date? = nil) {
        self.master = master
        self.epoch = epoch
        self.since = since
        self.updated = updated
        self.databases = databases
        self.handedOver = handedOver
    }
}

/// State that a master wrote while another with a newer epoch was active (a partition): not
/// in the cluster's state, never merged, kept where `path` says.
public struct ReplicaConflict: Codable, Sendable, Equatable {
    public var master: String
    public var epoch: Epoch
    /// Its last write, after `newerSince` (when the newer epoch began).
    public var updated: Date
    public var newerMaster: String
    public var newerEpoch: Epoch
    public var newerSince: Date
    public var path: String
    public init(master: String, epoch: Epoch, updated: Date, newerMaster: String, newerEpoch: Epoch, newerSince: Date, path: String) {
        self.master = master
        self.epoch = epoch
        self.updated = updated
        self.newerMaster = newerMaster
        self.newerEpoch = newerEpoch
        self.newerSince = newerSince
        self.path = path
    }
}

public struct StateStatusReply: Codable, Sendable, Equatable {
    public var master: String
    public var role: MasterRole
    public var epoch: Epoch
    /// Active and done restoring: this master's commits are being copied to the volume.
    public var publishing: Bool
    public var databases: [DatabaseReplication]
    /// Every master's replica on the volume, newest epoch first.
    public var replicas: [MasterReplica]
    public var conflicts: [ReplicaConflict]
    public var problem: String?
    /// /etc/clustermaker: why the active master's could not be applied here, and when it last was.
    public var configProblem: String?
    public var configApplied: Date?
    public init(master: String, role: MasterRole, epoch: Epoch, publishing: Bool, databases: [DatabaseReplication], replicas: [MasterReplica],
                conflicts: [ReplicaConflict], problem: String?) {
        self.master = master
        self.role = role
        self.epoch = epoch
        self.publishing = publishing
        self.databases = databases
        self.replicas = replicas
        self.conflicts = conflicts
        self.problem = problem
    }
}
