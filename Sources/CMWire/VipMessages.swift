import CMTypes
import Foundation

extension MessageType {
    public static let vipStatus = "vip.status"
    /// Event: one VRRP instance changed state.
    public static let vipTransition = "vip.transition"
    /// Event: this master's role changed (active/standby), with a new epoch.
    public static let vipRole = "vip.role"
    /// The active master takes a new epoch (body `VipReassert`, reply `VipStatusReply`).
    public static let vipReassert = "vip.reassert"
}

extension Topic {
    public static let vip = "vip"
}

/// This master's role in the suite: active while it is VRRP master of the role instance.
public enum MasterRole: String, Codable, Sendable {
    case active, standby
}

public enum VRRPInstanceState: String, Codable, Sendable {
    case initialize, backup, master, fault
}

/// One VRRP instance as cm-vipd runs it now.
public struct VRRPInstanceStatus: Codable, Sendable, Equatable {
    public var name: String
    public var interface: String
    /// The virtual-MAC interface on `interface` (use_vmac), nil without one.
    public var vmacInterface: String?
    public var vrid: Int
    public var state: VRRPInstanceState
    /// Priority advertised now (configured, lowered by tracking).
    public var priority: Int
    public var configuredPriority: Int
    public var advertIntervalMs: Int
    /// The master as last heard (this host's address while master); nil when unknown.
    public var masterAddress: IPv4Address?
    public var addresses: [IPv4InterfaceAddress]
    public var since: Date
    public var transitions: Int
    public var advertsSent: Int
    public var advertsReceived: Int
    /// Datagrams dropped, by reason (bad_ttl, bad_checksum, other_vrid, …).
    public var dropped: [String: Int]
    /// Tracked checks and interfaces that are down now.
    public var trackedDown: [String]
    /// Why this backup does not take over from a lower-priority master now (`preempt_after_sync`).
    public var preemptHeld: String?
    public var lastError: String?

    public init(name: String, interface: String, vrid: Int, state: VRRPInstanceState, priority: Int, configuredPriority: Int,
                advertIntervalMs: Int, masterAddress: IPv4Address?, addresses: [IPv4InterfaceAddress], since: Date, transitions: Int,
                advertsSent: Int, advertsReceived: Int, dropped: [String: Int], trackedDown: [String], lastError: String?,
                vmacInterface: String? = nil, preemptHeld: String? = nil) {
        self.name = name
        self.interface = interface
        self.vmacInterface = vmacInterface
        self.vrid = vrid
        self.state = state
        self.priority = priority
        self.configuredPriority = configuredPriority
        self.advertIntervalMs = advertIntervalMs
        self.masterAddress = masterAddress
        self.addresses = addresses
        self.since = since
        self.transitions = transitions
        self.advertsSent = advertsSent
        self.advertsReceived = advertsReceived
        self.dropped = dropped
        self.trackedDown = trackedDown
        self.preemptHeld = preemptHeld
        self.lastError = lastError
    }
}

public struct VipStatusReply: Codable, Sendable, Equatable {
    public var role: MasterRole
    public var epoch: Epoch
    public var roleInstance: String?
    public var instances: [VRRPInstanceStatus]
    public init(role: MasterRole, epoch: Epoch, roleInstance: String?, instances: [VRRPInstanceStatus]) {
        self.role = role
        self.epoch = epoch
        self.roleInstance = roleInstance
        self.instances = instances
    }
}

/// Body of `vip.transition` events.
public struct VipTransition: Codable, Sendable, Equatable {
    public var instance: String
    public var from: VRRPInstanceState
    public var to: VRRPInstanceState
    public var priority: Int
    public var at: Date
    public var reason: String
    public init(instance: String, from: VRRPInstanceState, to: VRRPInstanceState, priority: Int, at: Date, reason: String) {
        self.instance = instance
        self.from = from
        self.to = to
        self.priority = priority
        self.at = at
        self.reason = reason
    }
}

/// Body of `vip.role` events: followers (cm-pxed, cm-replicad, …) act on the highest epoch.
public struct VipRoleChange: Codable, Sendable, Equatable {
    public var role: MasterRole
    public var epoch: Epoch
    public var instance: String
    public var at: Date
    public init(role: MasterRole, epoch: Epoch, instance: String, at: Date) {
        self.role = role
        self.epoch = epoch
        self.instance = instance
        self.at = at
    }
}

/// Body of `vip.reassert`: why the active master needs a new epoch.
public struct VipReassert: Codable, Sendable, Equatable {
    public var reason: String
    public init(reason: String) { self.reason = reason }
}
