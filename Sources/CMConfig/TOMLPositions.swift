/// Where each key of a TOML document is written. TOMLKit reports positions only for syntax
/// errors, so after a successful parse the source is scanned once more to find, for every
/// key path ("metrics.interval", "check[2].port"), the line and column of the key and of its
/// value, and for every table header ("check[2]") the header's position. The document is
/// known to be valid TOML then, so the scanner only has to tell keys from values and skip
/// strings, arrays and inline tables, which may span lines.
public struct TOMLPositions: Sendable {
    public struct Position: Sendable, Equatable {
        public var line: Int
        public var column: Int
        public init(line: Int, column: Int) {
            self.line = line
            self.column = column
        }
    }

    public private(set) var keys: [String: Position] = [:]
    public private(set) var values: [String: Position] = [:]

    public init(source: String) {
        let lines = source.split(separator: "\n", omittingEmptySubsequences: false).map { Array($0.utf8) }
        var table = ""
        var arrayCounts: [String: Int] = [:]
        var lineIndex = 0
        while lineIndex < lines.count {
            let bytes = lines[lineIndex]
            var i = Self.skipSpace(bytes, 0)
            defer { lineIndex += 1 }
            guard i < bytes.count, bytes[i] != UInt8(ascii: "#") else { continue }
            if bytes[i] == UInt8(ascii: "[") {
                let isArray = i + 1 < bytes.count && bytes[i + 1] == UInt8(ascii: "[")
                let nameStart = i + (isArray ? 2 : 1)
                var (parts, end) = Self.readKey(bytes, Self.skipSpace(bytes, nameStart))
                _ = end
                if parts.isEmpty { parts = ["?"] }
                // Each enclosing array of tables resolves to its latest element: [check.http]
                // inside the most recent [[check]] is "check[2].http", [[backend.server]]
                // inside the second [[backend]] is "backend[1].server[n]".
                var path = ""
                for (k, part) in parts.enumerated() {
                    path = path.isEmpty ? part : path + "." + part
                    if k == parts.count - 1, isArray {
                        let n = arrayCounts[path, default: 0]
                        arrayCounts[path] = n + 1
                        path += "[\(n)]"
                    } else if let n = arrayCounts[path] {
                        path += "[\(n - 1)]"
                    }
                }
                table = path
                keys[path] = Position(line: lineIndex + 1, column: i + 1)
                end = 0
                continue
            }
            let keyColumn = i
            let (parts, afterKey) = Self.readKey(bytes, i)
            guard !parts.isEmpty else { continue }
            i = Self.skipSpace(bytes, afterKey)
            guard i < bytes.count, bytes[i] == UInt8(ascii: "=") else { continue }
            i = Self.skipSpace(bytes, i + 1)
            let path = (table.isEmpty ? "" : table + ".") + parts.joined(separator: ".")
            keys[path] = Position(line: lineIndex + 1, column: keyColumn + 1)
            values[path] = Position(line: lineIndex + 1, column: i + 1)
            // Skip the value, which may continue on the following lines.
            lineIndex = Self.skipValue(lines, line: lineIndex, column: i)
        }
    }

    /// Position to blame for `path`: its value, else its key, else the nearest enclosing table's header.
    public func position(of path: String, preferValue: Bool = true) -> Position? {
        if preferValue, let p = values[path] { return p }
        if let p = keys[path] { return p }
        var p = Substring(path)
        while let dot = p.lastIndex(of: ".") {
            p = p[..<dot]
            if let found = keys[String(p)] { return found }
        }
        return nil
    }

    static func skipSpace(_ b: [UInt8], _ i: Int) -> Int {
        var i = i
        while i < b.count, b[i] == 0x20 || b[i] == 0x09 { i += 1 }
        return i
    }

    static func isBare(_ c: UInt8) -> Bool {
        (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c == UInt8(ascii: "-") || c == UInt8(ascii: "_")
    }

    /// A possibly dotted, possibly quoted key.
    static func readKey(_ b: [UInt8], _ start: Int) -> ([String], Int) {
        var parts: [String] = []
        var i = start
        while i < b.count {
            i = skipSpace(b, i)
            guard i < b.count else { break }
            if b[i] == UInt8(ascii: "\"") || b[i] == UInt8(ascii: "'") {
                let quote = b[i]
                var j = i + 1
                var text: [UInt8] = []
                while j < b.count, b[j] != quote {
                    if quote == UInt8(ascii: "\""), b[j] == UInt8(ascii: "\\"), j + 1 < b.count { j += 1 }
                    text.append(b[j])
                    j += 1
                }
                parts.append(String(decoding: text, as: UTF8.self))
                i = j + 1
            } else {
                var j = i
                while j < b.count, isBare(b[j]) { j += 1 }
                guard j > i else { break }
                parts.append(String(decoding: b[i..<j], as: UTF8.self))
                i = j
            }
            let k = skipSpace(b, i)
            guard k < b.count, b[k] == UInt8(ascii: ".") else { break }
            i = k + 1
        }
        return (parts, i)
    }

    /// Returns the index of the last line the value starting at (line, column) occupies.
    static func skipValue(_ lines: [[UInt8]], line: Int, column: Int) -> Int {
        var l = line
        var i = column
        var depth = 0
        func at(_ l: Int, _ i: Int) -> UInt8? { l < lines.count && i < lines[l].count ? lines[l][i] : nil }
        func startsWith(_ s: String, _ l: Int, _ i: Int) -> Bool {
            let u = Array(s.utf8)
            return i + u.count <= lines[l].count && Array(lines[l][i..<(i + u.count)]) == u
        }
        while l < lines.count {
            guard let c = at(l, i) else {
                if depth == 0 { return l }
                l += 1
                i = 0
                continue
            }
            if startsWith("\"\"\"", l, i) || startsWith("'''", l, i) {
                let delimiter = startsWith("'''", l, i) ? "'''" : "\"\"\""
                i += 3
                // Find the closing delimiter, possibly lines later.
                while l < lines.count {
                    if i < lines[l].count, startsWith(delimiter, l, i) {
                        i += 3
                        break
                    }
                    if delimiter == "\"\"\"", at(l, i) == UInt8(ascii: "\\") { i += 2; continue }
                    if i >= lines[l].count { l += 1; i = 0 } else { i += 1 }
                }
                continue
            }
            switch c {
            case UInt8(ascii: "\""), UInt8(ascii: "'"):
                i += 1
                while let d = at(l, i), d != c {
                    if c == UInt8(ascii: "\""), d == UInt8(ascii: "\\") { i += 1 }
                    i += 1
                }
                i += 1
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                depth += 1
                i += 1
            case UInt8(ascii: "]"), UInt8(ascii: "}"):
                depth -= 1
                i += 1
                if depth <= 0 { return l }
            case UInt8(ascii: "#"):
                if depth == 0 { return l }
                l += 1
                i = 0
            default:
                i += 1
            }
        }
        return lines.count - 1
    }
}
