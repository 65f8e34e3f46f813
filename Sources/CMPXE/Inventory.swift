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
        ])
    }

    // MARK: Nodes

    public func nodes() throws -> [NodeInfo] {
        try pool.read { db in try Row.fetchAll(db, sql: "SELECT * FROM nodes ORDER BY name").compactMap(Self.node) }
    }

    /// Inserts or replaces the node named `node.name`; `previousName` renames.
    public func save(_ node: NodeInfo, previousName: String? = nil) throws {
        try pool.write { db in
            if let previousName, previousName != node.name {
                try db.execute(sql: "DELETE FROM nodes WHERE name = ?", arguments: [previousName])
            }
            try db.execute(sql: """
                INSERT OR REPLACE INTO nodes (name, mac, address, grp, image, kernel_args, next_image, arch, state,
                    first_seen, last_seen, boot_count, last_image) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)
                """, arguments: [node.name, node.mac.description, node.address?.description, node.group, node.image, node.kernelArgs,
                                 node.nextImage, node.arch, node.state.rawValue, node.firstSeen?.timeIntervalSince1970,
                                 node.lastSeen?.timeIntervalSince1970, node.bootCount, node.lastImage])
        }
    }

    public func remove(name: String) throws {
        try pool.write { db in try db.execute(sql: "DELETE FROM nodes WHERE name = ?", arguments: [name]) }
    }

    static func node(_ row: Row) -> NodeInfo? {
        guard let mac = MACAddress(row["mac"] as String), let state = NodeBootState(rawValue: row["state"]) else { return nil }
        let address: String? = row["address"]
        let first: Double? = row["first_seen"], last: Double? = row["last_seen"]
        return NodeInfo(name: row["name"], mac: mac, address: address.flatMap(IPv4Address.init), group: row["grp"], image: row["image"],
                        kernelArgs: row["kernel_args"], nextImage: row["next_image"], arch: row["arch"], state: state,
                        firstSeen: first.map(Date.init(timeIntervalSince1970:)), lastSeen: last.map(Date.init(timeIntervalSince1970:)),
                        bootCount: row["boot_count"], lastImage: row["last_image"])
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
