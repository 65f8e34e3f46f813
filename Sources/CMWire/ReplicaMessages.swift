import Foundation

// cm-replicad: the cluster filesystem (GlusterFS volume) and its NFS exports.
extension MessageType {
    public static let volumeStatus = "volume.status"
    /// Rewrites ganesha's exports from the image store now (cmctl after a build or removal).
    public static let exportsSync = "exports.sync"
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
