import CMTypes
import Foundation

public struct NetworkConfig: Sendable, Equatable {
    public var name: String
    public var cidr: IPv4Network
    public var gateway: IPv4Address?
}

public struct MasterConfig: Sendable, Equatable {
    public var name: String
    public var address: IPv4Address
}

public struct NodeConfig: Sendable, Equatable {
    public var name: NodeName
    public var address: IPv4Address
    public var mac: MACAddress?
    public var groups: [String]

    public init(name: NodeName, address: IPv4Address, mac: MACAddress? = nil, groups: [String] = []) {
        self.name = name
        self.address = address
        self.mac = mac
        self.groups = groups
    }
}

/// /etc/clustermaker/cluster.toml — cluster.toml(5).
public struct ClusterConfig: Sendable, Equatable {
    public var name: String
    public var domain: String?
    public var networks: [NetworkConfig]
    public var masters: [MasterConfig]
    public var nodes: [NodeConfig]

    public init(name: String, domain: String?, networks: [NetworkConfig], masters: [MasterConfig], nodes: [NodeConfig]) {
        self.name = name
        self.domain = domain
        self.networks = networks
        self.masters = masters
        self.nodes = nodes
    }

    public static let fileName = "cluster.toml"

    public static func load(configDir: String) throws(ConfigErrors) -> ClusterConfig {
        try parse(ConfigSource.read((configDir as NSString).appendingPathComponent(fileName)))
    }

    public static func parse(_ source: ConfigSource) throws(ConfigErrors) -> ClusterConfig {
        let doc = try ConfigDocument(source)
        let root = doc.rootReader
        let cluster = root.table("cluster")
        let name = cluster.string("name", required: true) ?? ""
        if root.has("cluster") == false { root.tableError("missing required table [cluster]") }
        if !name.isEmpty, !NodeName.isValid(name) { cluster.error("name", "\"\(name)\" is not a valid name (1-63 of a-z, 0-9, \"-\")") }
        let domain = cluster.string("domain")
        cluster.finish()

        var networks: [NetworkConfig] = []
        var seenNetworks = Set<String>()
        for t in root.tables("network") {
            let n = t.string("name", required: true)
            if let n { t.label = "network \"\(n)\"" }
            let cidr = t.ipv4Network("cidr", required: true)
            let gateway = t.ipv4("gateway")
            if let n, !seenNetworks.insert(n).inserted { t.error("name", "duplicate network name \"\(n)\"") }
            if let cidr, let gateway, !cidr.contains(gateway) { t.error("gateway", "\(gateway) is not inside \(cidr)") }
            t.finish()
            if let n, let cidr { networks.append(NetworkConfig(name: n, cidr: cidr, gateway: gateway)) }
        }

        var masters: [MasterConfig] = []
        var seenMasters = Set<String>()
        for t in root.tables("master") {
            let n = t.string("name", required: true)
            if let n { t.label = "master \"\(n)\"" }
            let address = t.ipv4("address", required: true)
            if let n, !seenMasters.insert(n).inserted { t.error("name", "duplicate master name \"\(n)\"") }
            t.finish()
            if let n, let address { masters.append(MasterConfig(name: n, address: address)) }
        }

        var nodes: [NodeConfig] = []
        var seenNodes = Set<String>(), seenAddresses = [IPv4Address: String](), seenMACs = [MACAddress: String]()
        for t in root.tables("node") {
            let n = t.string("name", required: true)
            if let n { t.label = "node \"\(n)\"" }
            if let n, !NodeName.isValid(n) { t.error("name", "\"\(n)\" is not a valid node name (1-63 of a-z, 0-9, \"-\")") }
            let address = t.ipv4("address", required: true)
            let mac = t.mac("mac")
            let groups = t.stringArray("groups") ?? []
            for g in groups where !NodeName.isValid(g) { t.error("groups", "\"\(g)\" is not a valid group name (1-63 of a-z, 0-9, \"-\")") }
            if let n, !seenNodes.insert(n).inserted { t.error("name", "duplicate node name \"\(n)\"") }
            if let address, let other = seenAddresses[address] { t.error("address", "\(address) is already node \"\(other)\"'s address") }
            if let mac, let other = seenMACs[mac] { t.error("mac", "\(mac) is already node \"\(other)\"'s MAC address") }
            if let address, let n { seenAddresses[address] = n }
            if let mac, let n { seenMACs[mac] = n }
            t.finish()
            if let n, let address { nodes.append(NodeConfig(name: NodeName(n), address: address, mac: mac, groups: groups)) }
        }
        root.finish()
        try doc.check()
        return ClusterConfig(name: name, domain: domain, networks: networks, masters: masters, nodes: nodes)
    }
}
