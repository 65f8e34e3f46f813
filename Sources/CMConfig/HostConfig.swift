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

    /// Files that are one host's and so never replicated as they are (only rewritten for a clone).
    public static let hostFiles: Set<String> = ["vipd.toml", "replicad.toml"]

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
