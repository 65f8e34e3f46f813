import CMTypes
import Foundation

/// An inventory file for `cmctl node import`/`export`: admins bringing an existing cluster
/// list its nodes as TOML (`[[node]]` tables) or CSV (header
/// `name,mac,address,group,image,kernel_args,bmc`).
public enum InventoryFile {
    public static let csvHeader = ["name", "mac", "address", "group", "image", "kernel_args", "bmc"]

    public static func parseTOML(_ source: ConfigSource) throws(ConfigErrors) -> [NodeSpec] {
        let doc = try ConfigDocument(source)
        let root = doc.rootReader
        var out: [NodeSpec] = []
        var macs = Set<MACAddress>()
        for t in root.tables("node") {
            let name = t.string("name")
            if let name { t.label = "node \"\(name)\"" }
            if let name, !PxedConfig.isName(name) { t.error("name", "\"\(name)\" is not a node name (1-32 of A-Z, a-z, 0-9, \"_\", \"-\")") }
            let mac = t.mac("mac")
            if mac == nil, !t.has("mac") { t.tableError("missing required key \"mac\"") }
            if let mac, !macs.insert(mac).inserted { t.error("mac", "\(mac) is listed twice") }
            let entry = mac.map {
                NodeSpec(name: name, mac: $0, address: t.ipv4("address"), group: t.string("group"), image: t.string("image"),
                               kernelArgs: t.string("kernel_args"), bmc: t.ipv4("bmc"))
            }
            t.finish()
            if let entry { out.append(entry) }
        }
        root.finish()
        try doc.check()
        return out
    }

    /// CSV with a header line naming the columns (any order; `mac` required); empty cells
    /// are unset. Errors name file:line.
    public static func parseCSV(_ text: String, file: String) throws(ConfigErrors) -> [NodeSpec] {
        var errors: [ConfigError] = []
        var out: [NodeSpec] = []
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { $0.hasSuffix("\r") ? String($0.dropLast()) : String($0) }
        guard let headerLine = lines.first(where: { !$0.isEmpty }) else { return [] }
        let header = headerLine.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        func fail(_ line: Int, _ message: String) { errors.append(ConfigError(file: file, line: line, column: 1, key: nil, message: message)) }
        for h in header where !csvHeader.contains(h) { fail(1, "unknown column \"\(h)\" (columns: \(csvHeader.joined(separator: ", ")))") }
        guard header.contains("mac") else {
            fail(1, "the header names no \"mac\" column")
            throw ConfigErrors(errors)
        }
        var macs = Set<MACAddress>()
        let start = (lines.firstIndex(of: headerLine) ?? 0) + 1
        for (i, line) in lines.enumerated().dropFirst(start) where !line.trimmingCharacters(in: .whitespaces).isEmpty && !line.hasPrefix("#") {
            let cells = line.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard cells.count == header.count else { fail(i + 1, "\(cells.count) cells, the header has \(header.count)"); continue }
            var row: [String: String] = [:]
            for (h, c) in zip(header, cells) where !c.isEmpty { row[h] = c }
            guard let macText = row["mac"], let mac = MACAddress(macText) else { fail(i + 1, "mac: \"\(row["mac"] ?? "")\" is not a MAC address"); continue }
            guard macs.insert(mac).inserted else { fail(i + 1, "mac: \(mac) is listed twice"); continue }
            var address: IPv4Address?
            if let a = row["address"] {
                guard let parsed = IPv4Address(a) else { fail(i + 1, "address: \"\(a)\" is not an IPv4 address"); continue }
                address = parsed
            }
            var bmc: IPv4Address?
            if let b = row["bmc"] {
                guard let parsed = IPv4Address(b) else { fail(i + 1, "bmc: \"\(b)\" is not an IPv4 address"); continue }
                bmc = parsed
            }
            if let n = row["name"], !PxedConfig.isName(n) { fail(i + 1, "name: \"\(n)\" is not a node name"); continue }
            out.append(NodeSpec(name: row["name"], mac: mac, address: address, group: row["group"], image: row["image"], kernelArgs: row["kernel_args"],
                                bmc: bmc))
        }
        if !errors.isEmpty { throw ConfigErrors(errors) }
        return out
    }
}
