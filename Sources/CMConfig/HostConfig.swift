import CMTypes
import Foundation

/// The configuration a cloned master gets: the active master's files, with the few values
/// that belong to one host changed to the new master's (its name and address from
/// cluster.toml's [[master]] list). Everything else — checks, pools, groups, images,
/// frontends — is the cluster's and is copied as it is.
///
/// The files are edited line by line, so the admin's comments and layout stay; a changed
/// line says what it was. The result is checked by each daemon's --check-config on the new
/// master before anything starts.
public enum HostConfig {
    public struct Host: Sendable, Equatable {
        public var name: String
        public var address: IPv4Address
        public init(name: String, address: IPv4Address) {
            self.name = name
            self.address = address
        }
    }

    /// How much lower the clone's VRRP priority is than this master's: it is the backup.
    public static let priorityStep = 50

    /// The keys whose values are each master's own: its address and name, its VRRP priority
    /// and peers, its interfaces and local paths. A replicated file keeps the standby's values
    /// of these (table, key); everything else comes from the active master.
    public static let hostKeys: [String: [(table: String, key: String)]] = [
        "replicad.toml": [("volume", "address"), ("volume", "brick"), ("volume", "mount"), ("volume", "glusterd_socket"),
                          ("nfs", "exports_file"), ("nfs", "ganesha_pid_file"), ("state", "master"), ("database", "path")],
        "vipd.toml": [("instance", "priority"), ("instance", "unicast_peers"), ("instance", "interface")],
        "pxed.toml": [("pxed", "server_address"), ("pxed", "interface"), ("pxed", "boot_dir"), ("pxed", "images_dir")],
    ]

    /// `incoming` (the active master's `file`) with this master's own values of the host keys,
    /// taken from `own` (its current copy). Tables that occur more than once ([[instance]])
    /// are matched in order. A host key that `own` has and `incoming` lacks is added.
    public static func merge(file: String, incoming: String, own: String) -> String {
        guard let keys = hostKeys[file] else { return incoming }
        struct Slot: Hashable { var table: String; var occurrence: Int; var key: String }
        func walk(_ lines: [String], _ body: (Int, Slot?, String?) -> Void) {
            var table = "", seen: [String: Int] = [:]
            for (i, line) in lines.enumerated() {
                if let t = header(line) {
                    table = t
                    seen[t, default: -1] += 1
                    body(i, Slot(table: t, occurrence: seen[t]!, key: ""), nil)
                } else if let (k, v) = keyValue(line), keys.contains(where: { $0.table == table && $0.key == k }) {
                    body(i, Slot(table: table, occurrence: seen[table] ?? 0, key: k), v)
                }
            }
        }
        var mine: [Slot: String] = [:]
        walk(own.components(separatedBy: "\n")) { _, slot, value in if let slot, let value { mine[slot] = value } }
        var lines = incoming.components(separatedBy: "\n")
        var present = Set<Slot>(), headers: [Slot: Int] = [:]
        walk(lines) { i, slot, value in
            guard let slot else { return }
            if value == nil { headers[slot] = i; return }
            present.insert(slot)
            if let v = mine[slot], v != value { lines[i] = "\(slot.key) = \(v)" }
        }
        // Own host keys the incoming file does not set: added under their table, last first
        // so that the line numbers of earlier headers stay right.
        let missing = mine.keys.filter { !present.contains($0) }
            .sorted { (headers[Slot(table: $0.table, occurrence: $0.occurrence, key: "")] ?? .max) > (headers[Slot(table: $1.table, occurrence: $1.occurrence, key: "")] ?? .max) }
        for slot in missing {
            let line = "\(slot.key) = \(mine[slot]!)"
            if let h = headers[Slot(table: slot.table, occurrence: slot.occurrence, key: "")] {
                lines.insert(line, at: h + 1)
            } else {
                if lines.last == "" { lines.removeLast() }
                lines += ["", "[\(slot.table)]", line, ""]
            }
        }
        return lines.joined(separator: "\n")
    }

    /// `text`, the content of config file `file` on `source`, as `target` should have it.
    public static func rewrite(file: String, text: String, source: Host, target: Host) -> String {
        var lines = text.components(separatedBy: "\n")
        func set(_ table: String, _ key: String, _ value: (String) -> String?, insert: String? = nil) {
            var current = ""
            var found = false
            var headerLine: Int?
            for i in lines.indices {
                if let t = header(lines[i]) {
                    current = t
                    if t == table { headerLine = i }
                    continue
                }
                guard current == table, let (k, v) = keyValue(lines[i]), k == key else { continue }
                found = true
                if let new = value(v), new != v {
                    lines[i] = "\(key) = \(new)  # was \(v) on \(source.name) (cmctl master clone)"
                }
            }
            guard !found, let insert else { return }
            if let h = headerLine {
                lines.insert("\(key) = \(insert)  # \(target.name)'s (cmctl master clone)", at: h + 1)
            } else {
                if lines.last == "" { lines.removeLast() }
                lines += ["", "[\(table)]", "\(key) = \(insert)  # \(target.name)'s (cmctl master clone)", ""]
            }
        }
        let src = "\"\(source.address)\"", dst = "\"\(target.address)\""
        switch file {
        case "replicad.toml":
            set("volume", "address", { $0 == src ? dst : nil })
            set("state", "master", { _ in "\"\(target.name)\"" }, insert: "\"\(target.name)\"")
        case "vipd.toml":
            set("instance", "priority", { v in Int(v).map { String(max(1, min($0, 254) - priorityStep)) } })
            set("instance", "unicast_peers", { $0.replacingOccurrences(of: dst, with: src) })
        case "pxed.toml":
            set("pxed", "server_address", { $0 == src ? dst : nil })
        default:
            break
        }
        return lines.joined(separator: "\n")
    }

    /// "volume" for `[volume]`, "instance" for `[[instance]]`; nil for any other line.
    static func header(_ line: String) -> String? {
        var s = line.trimmingCharacters(in: .whitespaces)
        if let hash = s.firstIndex(of: "#") { s = String(s[..<hash]).trimmingCharacters(in: .whitespaces) }
        guard s.hasPrefix("["), s.hasSuffix("]") else { return nil }
        return s.trimmingCharacters(in: CharacterSet(charactersIn: "[]")).trimmingCharacters(in: .whitespaces)
    }

    /// `key = value` without a trailing comment (values here hold no "#").
    static func keyValue(_ line: String) -> (String, String)? {
        var s = line.trimmingCharacters(in: .whitespaces)
        if let hash = s.firstIndex(of: "#") { s = String(s[..<hash]) }
        guard let eq = s.firstIndex(of: "=") else { return nil }
        let key = s[..<eq].trimmingCharacters(in: .whitespaces)
        let value = s[s.index(after: eq)...].trimmingCharacters(in: .whitespaces)
        return key.isEmpty ? nil : (key, value)
    }
}
