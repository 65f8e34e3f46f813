import CMStore
import CMTypes
import CMWire
import Foundation
import GRDB
import PXEProtocols

/// cm-pxed's database: the node inventory and the DHCP leases. Thread-safe (GRDB serializes
/// writes); cm-pxed is the only writer.
public final class Inventory: Sendable {
    let pool: DatabasePool

    public init(path: String) throws {
        pool = try Store.open(path: path, migrations: [
            Store.Migration("v1-nodes") { db in
                try db.execute(sql: """
                    CREATE TABLE nodes (
                        name TEXT PRIMARY KEY, mac TEXT NOT NULL UNIQUE, address TEXT UNIQUE, grp TEXT NOT NULL,
                        image TEXT, kernel_args TEXT, next_image TEXT, arch TEXT, state TEXT NOT NULL,
                        first_seen REAL, last_seen REAL, boot_count INTEGER NOT NULL DEFAULT 0, last_image TEXT);
                    CREATE TABLE leases (
                        address TEXT PRIMARY KEY, mac TEXT NOT NULL, state TEXT NOT NULL, expires INTEGER NOT NULL, host_name TEXT);
                    """)
            },
            Store.Migration("v2-seen-address") { db in
                // Proxy mode's observed address, apart from the unique fixed one (issue 23).
                try db.execute(sql: "ALTER TABLE nodes ADD COLUMN seen_address TEXT")
            },
            Store.Migration("v3-bmc") { db in
                // The node's BMC, for reboots over IPMI.
                try db.execute(sql: "ALTER TABLE nodes ADD COLUMN bmc TEXT")
            },
        ])
    }

    // MARK: Nodes

    public func nodes() throws -> [NodeInfo] {
        try pool.read { db in try Row.fetchAll(db, sql: "SELECT * FROM nodes ORDER BY name").compactMap(Self.node) }
    }

    /// Stores `node`, found by its MAC address (its identity; a new MAC inserts a row).
    /// Never deletes or overwrites another node: a name or fixed address that another row
    /// holds fails with `InventoryConflict` and changes nothing. (`INSERT OR REPLACE` would
    /// have deleted that other row, silently.)
    public func save(_ node: NodeInfo) throws { try save([node]) }

    /// Stores all of `nodes` in one transaction: all of them or, on a conflict, none.
    public func save(_ nodes: [NodeInfo]) throws {
        var current: NodeInfo?
        do {
            try pool.write { db in
                for node in nodes {
                    current = node
                    let values: StatementArguments = [
                        node.name, node.address?.description, node.group, node.image, node.kernelArgs, node.nextImage, node.arch,
                        node.state.rawValue, node.firstSeen?.timeIntervalSince1970, node.lastSeen?.timeIntervalSince1970, node.bootCount,
                        node.lastImage, node.seenAddress?.description, node.bmc?.description, node.mac.description,
                    ]
                    try db.execute(sql: Self.update, arguments: values)
                    if db.changesCount == 0 { try db.execute(sql: Self.insert, arguments: values) }
                }
            }
        } catch let error as DatabaseError where error.resultCode == .SQLITE_CONSTRAINT {
            guard let current else { throw error }
            throw try conflict(for: current, error)
        }
    }

    /// Every column but mac, in the order of `save`'s values; mac comes last in both statements.
    static let columns = ["name", "address", "grp", "image", "kernel_args", "next_image", "arch", "state", "first_seen", "last_seen",
                          "boot_count", "last_image", "seen_address", "bmc"]
    static let update = "UPDATE nodes SET \(columns.map { "\($0) = ?" }.joined(separator: ", ")) WHERE mac = ?"
    static let insert = "INSERT INTO nodes (\(columns.joined(separator: ", ")), mac) VALUES (\(Array(repeating: "?", count: columns.count + 1).joined(separator: ",")))"

    /// Which other node holds what `node` wanted.
    private func conflict(for node: NodeInfo, _ error: DatabaseError) throws -> InventoryConflict {
        try pool.read { db in
            let mac = node.mac.description
            if let other = try String.fetchOne(db, sql: "SELECT name FROM nodes WHERE name = ? AND mac != ?", arguments: [node.name, mac]) {
                return InventoryConflict(node: node.name, mac: node.mac, what: "the name \(node.name)", holder: other)
            }
            if let a = node.address,
               let other = try String.fetchOne(db, sql: "SELECT name FROM nodes WHERE address = ? AND mac != ?", arguments: [a.description, mac]) {
                return InventoryConflict(node: node.name, mac: node.mac, what: "the address \(a)", holder: other)
            }
            return InventoryConflict(node: node.name, mac: node.mac, what: error.message ?? "a unique value", holder: nil)
        }
    }

    public func remove(name: String) throws {
        try pool.write { db in try db.execute(sql: "DELETE FROM nodes WHERE name = ?", arguments: [name]) }
    }

    static func node(_ row: Row) -> NodeInfo? {
        guard let mac = MACAddress(row["mac"] as String), let state = NodeBootState(rawValue: row["state"]) else { return nil }
        let address: String? = row["address"], seen: String? = row["seen_address"], bmc: String? = row["bmc"]
        let first: Double? = row["first_seen"], last: Double? = row["last_seen"]
        return NodeInfo(name: row["name"], mac: mac, address: address.flatMap(IPv4Address.init), group: row["grp"], image: row["image"],
                        kernelArgs: row["kernel_args"], nextImage: row["next_image"], arch: row["arch"], state: state,
                        firstSeen: first.map(Date.init(timeIntervalSince1970:)), lastSeen: last.map(Date.init(timeIntervalSince1970:)),
                        bootCount: row["boot_count"], lastImage: row["last_image"],
                        seenAddress: seen.flatMap(IPv4Address.init), bmc: bmc.flatMap(IPv4Address.init))
    }

    // MARK: Leases

    public func leases() throws -> [DHCPLease] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM leases").compactMap { row in
                guard let a = IPv4Address(row["address"] as String), let m = MACAddress(row["mac"] as String),
                      let s = DHCPLease.State(rawValue: row["state"]) else { return nil }
                return DHCPLease(address: a, mac: m, state: s, expires: row["expires"], hostName: row["host_name"])
            }
        }
    }

    public func store(_ leases: [DHCPLease]) throws {
        guard !leases.isEmpty else { return }
        try pool.write { db in
            for l in leases {
                try db.execute(sql: "INSERT OR REPLACE INTO leases (address, mac, state, expires, host_name) VALUES (?,?,?,?,?)",
                               arguments: [l.address.description, l.mac.description, l.state.rawValue, l.expires, l.hostName])
            }
        }
    }
}

/// A save that would have taken a name or fixed address another node holds.
public struct InventoryConflict: Error, CustomStringConvertible {
    public var node: String
    public var mac: MACAddress
    public var what: String
    /// The node that holds it, when the database says.
    public var holder: String?
    public var description: String {
        "node \(node) (\(mac)) not stored: \(what) belongs to \(holder.map { "node \($0)" } ?? "another node")"
    }
}
