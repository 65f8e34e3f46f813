import CMTypes
import CMWire

/// The inventory in memory, found by MAC address, name or fixed address in constant time:
/// checks that a name or address is free run on every edit and every import entry, and at
/// 20,000 nodes a walk through all of them each time is what made an import quadratic.
struct NodeTable {
    private(set) var byMAC: [MACAddress: NodeInfo] = [:]
    private var byName: [String: MACAddress] = [:]
    private var byAddress: [IPv4Address: MACAddress] = [:]
    /// The nodes in name order, kept until the next change: a list in pages asks for it once
    /// per page, and 20,000 nodes are not sorted 40 times for one `cmctl node list`.
    private var sortedCache: [NodeInfo]?

    init(_ nodes: [NodeInfo] = []) {
        for n in nodes { put(n) }
    }

    subscript(mac: MACAddress) -> NodeInfo? { byMAC[mac] }
    var values: Dictionary<MACAddress, NodeInfo>.Values { byMAC.values }
    var count: Int { byMAC.count }
    var isEmpty: Bool { byMAC.isEmpty }
    var names: Dictionary<String, MACAddress>.Keys { byName.keys }

    func named(_ name: String) -> NodeInfo? { byName[name].flatMap { byMAC[$0] } }
    func holding(_ address: IPv4Address) -> NodeInfo? { byAddress[address].flatMap { byMAC[$0] } }

    /// Every node in name order.
    mutating func sorted() -> [NodeInfo] {
        if let sortedCache { return sortedCache }
        let sorted = byMAC.values.sorted { $0.name < $1.name }
        sortedCache = sorted
        return sorted
    }

    /// Adds or replaces the node of `node.mac`.
    mutating func put(_ node: NodeInfo) {
        remove(node.mac)
        sortedCache = nil
        byMAC[node.mac] = node
        byName[node.name] = node.mac
        if let a = node.address { byAddress[a] = node.mac }
    }

    mutating func remove(_ mac: MACAddress) {
        guard let old = byMAC.removeValue(forKey: mac) else { return }
        sortedCache = nil
        if byName[old.name] == mac { byName[old.name] = nil }
        if let a = old.address, byAddress[a] == mac { byAddress[a] = nil }
    }
}
