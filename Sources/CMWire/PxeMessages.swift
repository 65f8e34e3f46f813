import CMTypes
import Foundation

extension MessageType {
    public static let pxeStatus = "pxe.status"
    public static let nodeList = "node.list"
    public static let nodeShow = "node.show"
    public static let nodeAdd = "node.add"
    public static let nodeSet = "node.set"
    public static let nodeRemove = "node.rm"
    /// `cmctl node import`: many adds and changes, applied all or none.
    public static let nodeImport = "node.import"
    /// `cmctl node reboot`, the console's Reboot: cm-pxed asks the node over SSH.
    public static let nodeReboot = "node.reboot"
    /// Event: a node was discovered, started booting, or booted.
    public static let nodeEvent = "node.event"
    /// Event: the inventory was edited (cmctl node add/set/rm/import); body NodeRef, whose name
    /// is empty when an import changed many nodes at once.
    public static let nodeChanged = "node.changed"
}

extension Topic {
    public static let node = "node"
}

/// Where a node is in its boot, as cm-pxed saw it last.
public enum NodeBootState: String, Codable, Sendable, CaseIterable {
    /// Added by an admin, never seen booting.
    case new
    /// Seen for the first time (DHCP from a PXE client).
    case discovered
    /// Fetched its boot script.
    case booting
    /// Fetched its final boot stage (the image's initrd, else its kernel).
    case booted
}

/// One node of the inventory.
public struct NodeInfo: Codable, Sendable, Equatable {
    public var name: String
    public var mac: MACAddress
    /// Its fixed address: full DHCP hands out exactly this one, and no two nodes share one.
    /// Set by an admin or by cm-pxed's own DHCP, never by what a request claims.
    public var address: IPv4Address?
    /// Where it was seen last when cm-pxed does not hand out addresses (proxy mode, or DHCP
    /// off): the address its boot script was fetched from. An observation, not an identity:
    /// another DHCP server may give it to another node tomorrow, which then takes it over.
    public var seenAddress: IPv4Address?
    public var group: String
    /// The node's own image; nil: its group's.
    public var image: String?
    /// Kernel arguments added to its group's.
    public var kernelArgs: String?
    /// The image for the next boot only.
    public var nextImage: String?
    /// "bios", "uefi-x86_64", … from DHCP option 93.
    public var arch: String?
    public var state: NodeBootState
    public var firstSeen: Date?
    public var lastSeen: Date?
    public var bootCount: Int
    /// The image it booted last.
    public var lastImage: String?
    /// Its BMC's address: reboots over IPMI (pxed.toml's [ipmi]) where SSH cannot.
    public var bmc: IPv4Address?

    public init(name: String, mac: MACAddress, address: IPv4Address? = nil, group: String, image: String? = nil, kernelArgs: String? = nil,
                nextImage: String? = nil, arch: String? = nil, state: NodeBootState = .new, firstSeen: Date? = nil, lastSeen: Date? = nil,
                bootCount: Int = 0, lastImage: String? = nil, seenAddress: IPv4Address? = nil, bmc: IPv4Address? = nil) {
        self.name = name
        self.mac = mac
        self.address = address
        self.seenAddress = seenAddress
        self.group = group
        self.image = image
        self.kernelArgs = kernelArgs
        self.nextImage = nextImage
        self.arch = arch
        self.state = state
        self.firstSeen = firstSeen
        self.lastSeen = lastSeen
        self.bootCount = bootCount
        self.lastImage = lastImage
        self.bmc = bmc
    }

    /// Where to reach it: its fixed address, else where it was seen last.
    public var reachableAddress: IPv4Address? { address ?? seenAddress }
}

public struct NodeListRequest: PagedRequest, Codable {
    /// Paging: the `next` of the previous page.
    public var cursor: String?
    public init(cursor: String? = nil) { self.cursor = cursor }
}

/// One page of the inventory, in the order of the nodes' names.
public struct NodeListReply: PagedReply, Codable, Sendable {
    public var nodes: [NodeInfo]
    public var next: String?
    public var items: [NodeInfo] { nodes }
    public init(nodes: [NodeInfo], next: String? = nil) {
        self.nodes = nodes
        self.next = next
    }
}

/// A node by name or MAC address.
public struct NodeRef: Codable, Sendable {
    public var node: String
    public init(node: String) { self.node = node }
}

/// `cmctl node add`: the node to add (unset fields get cm-pxed's defaults).
public typealias NodeAddRequest = NodeSpec

/// Changes to one node; nil leaves a field as it is, "" (or `clear…`) empties it.
public struct NodeSetRequest: Codable, Sendable {
    public var node: String
    public var name: String?
    public var address: IPv4Address?
    public var clearAddress: Bool
    public var group: String?
    public var image: String?
    public var kernelArgs: String?
    public var nextImage: String?
    public var bmc: IPv4Address?
    public var clearBmc: Bool
    public init(node: String, name: String? = nil, address: IPv4Address? = nil, clearAddress: Bool = false, group: String? = nil,
                image: String? = nil, kernelArgs: String? = nil, nextImage: String? = nil, bmc: IPv4Address? = nil, clearBmc: Bool = false) {
        self.node = node
        self.name = name
        self.address = address
        self.clearAddress = clearAddress
        self.group = group
        self.image = image
        self.kernelArgs = kernelArgs
        self.nextImage = nextImage
        self.bmc = bmc
        self.clearBmc = clearBmc
    }
}

/// `cmctl node import`. A file too big for one frame goes in parts: each part but the last
/// has `more` set and is only kept (under the `staging` name the first part's reply gives);
/// the last applies every part's entries together, all or none.
public struct NodeImportRequest: Codable, Sendable {
    public var nodes: [NodeSpec]
    public var staging: String?
    public var more: Bool
    /// Entries in one part: a NodeSpec is at most about 250 bytes of JSON.
    public static let partSize = 2000
    public init(nodes: [NodeSpec], staging: String? = nil, more: Bool = false) {
        self.nodes = nodes
        self.staging = staging
        self.more = more
    }
}

public struct NodeImportReply: Codable, Sendable, Equatable {
    public var added: Int
    public var updated: Int
    /// Set while parts are being collected: name the next part with it.
    public var staging: String?
    public init(added: Int, updated: Int, staging: String? = nil) {
        self.added = added
        self.updated = updated
        self.staging = staging
    }
}

/// How a node is rebooted: a clean reboot over SSH, or a reset through its BMC over IPMI.
public enum RebootMethod: String, Codable, Sendable, CaseIterable {
    case ssh, ipmi
}

/// Reboot a node. `method` nil: over SSH, and through the BMC when SSH cannot (the node has
/// no address or host key yet, or does not answer) and it has one. `requestedBy` names who
/// asked (the console's user) for cm-pxed's log.
public struct NodeRebootRequest: Codable, Sendable {
    public var node: String
    public var method: RebootMethod?
    public var requestedBy: String?
    public init(node: String, method: RebootMethod? = nil, requestedBy: String? = nil) {
        self.node = node
        self.method = method
        self.requestedBy = requestedBy
    }
}

public struct NodeRebootReply: Codable, Sendable, Equatable {
    public var node: String
    /// Where it was asked: the node's address (SSH) or its BMC's (IPMI).
    public var address: IPv4Address
    public var via: RebootMethod
    /// What the other way said when it was tried first and failed.
    public var fallbackReason: String?
    public init(node: String, address: IPv4Address, via: RebootMethod, fallbackReason: String? = nil) {
        self.node = node
        self.address = address
        self.via = via
        self.fallbackReason = fallbackReason
    }
}

public struct NodeEvent: Codable, Sendable, Equatable {
    public var node: String
    public var mac: MACAddress
    public var address: IPv4Address?
    public var state: NodeBootState
    public var image: String?
    public var at: Date
    public init(node: String, mac: MACAddress, address: IPv4Address?, state: NodeBootState, image: String?, at: Date) {
        self.node = node
        self.mac = mac
        self.address = address
        self.state = state
        self.image = image
        self.at = at
    }
}

public struct PxeStatusReply: Codable, Sendable {
    public var mode: String
    /// Answering DHCP now (standalone, or the active master).
    public var active: Bool
    public var interface: String
    public var bootAddress: IPv4Address
    public var httpPort: Int
    public var tftpPort: Int
    public var nodes: Int
    public var leases: Int
    /// Counters: dhcp_received, dhcp_replied, dhcp_malformed, dhcp_ignored, tftp_transfers,
    /// tftp_refused, tftp_failed, http_requests, …
    public var counters: [String: Int]
    public var images: [String]
    public init(mode: String, active: Bool, interface: String, bootAddress: IPv4Address, httpPort: Int, tftpPort: Int, nodes: Int, leases: Int,
                counters: [String: Int], images: [String]) {
        self.mode = mode
        self.active = active
        self.interface = interface
        self.bootAddress = bootAddress
        self.httpPort = httpPort
        self.tftpPort = tftpPort
        self.nodes = nodes
        self.leases = leases
        self.counters = counters
        self.images = images
    }
}
