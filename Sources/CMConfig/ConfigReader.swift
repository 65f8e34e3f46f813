import CMTypes
import Foundation
import TOMLKit

/// A config file's text, where it came from.
public struct ConfigSource: Sendable {
    public var path: String
    public var text: String

    public init(path: String, text: String) {
        self.path = path
        self.text = text
    }

    /// Reads `path`; a missing or unreadable file is a ConfigError naming it.
    public static func read(_ path: String) throws(ConfigErrors) -> ConfigSource {
        do {
            return ConfigSource(path: path, text: try String(contentsOfFile: path, encoding: .utf8))
        } catch {
            let reason: String
            if !FileManager.default.fileExists(atPath: path) {
                reason = "cannot read: no such file"
            } else if !FileManager.default.isReadableFile(atPath: path) {
                reason = "cannot read: permission denied"
            } else {
                reason = "cannot read: not UTF-8 text"
            }
            throw ConfigErrors([ConfigError(file: path, line: 0, column: 0, key: nil, message: reason)])
        }
    }
}

/// Collects every error of one load.
final class ErrorSink {
    var errors: [ConfigError] = []
}

/// A parsed document: the TOML tree plus where each key is written.
public struct ConfigDocument {
    let source: ConfigSource
    let root: TOMLTable
    let positions: TOMLPositions
    let sink = ErrorSink()

    public init(_ source: ConfigSource) throws(ConfigErrors) {
        if let problem = TOMLPrecheck.firstProblem(in: source.text) {
            throw ConfigErrors([ConfigError(file: source.path, line: problem.line, column: problem.column, key: nil, message: problem.message)])
        }
        do {
            root = try TOMLTable(string: source.text)
        } catch let error as TOMLParseError {
            throw ConfigErrors([ConfigError(file: source.path, line: error.source.begin.line, column: error.source.begin.column,
                                            key: nil, message: error.description)])
        } catch {
            throw ConfigErrors([ConfigError(file: source.path, line: 1, column: 1, key: nil, message: "\(error)")])
        }
        self.source = source
        self.positions = TOMLPositions(source: source.text)
    }

    public var rootReader: TableReader { TableReader(table: root, path: "", label: nil, document: self) }

    func report(path: String, label: String?, message: String, preferValue: Bool = true) {
        let p = positions.position(of: path, preferValue: preferValue) ?? .init(line: 1, column: 1)
        sink.errors.append(ConfigError(file: source.path, line: p.line, column: p.column, key: label, message: message))
    }

    /// Throws everything reported so far.
    public func check() throws(ConfigErrors) {
        if !sink.errors.isEmpty { throw ConfigErrors(sink.errors) }
    }
}

/// Reads typed values out of one table, reporting problems at their line and column, and
/// remembering which keys it was asked for so that `finish()` can reject the rest as unknown.
public final class TableReader {
    /// nil for a table the file does not have: every key is then at its default. (An empty
    /// TOMLTable() instead would leak: TOMLKit never frees tables it creates standalone.)
    let table: TOMLTable?
    /// Position path: "check[2]", "metrics", "" for the root.
    let path: String
    /// How errors name this table: `check "web"`, `metrics`; nil for the root.
    var label: String?
    let document: ConfigDocument
    private var known: [String] = []

    init(table: TOMLTable?, path: String, label: String?, document: ConfigDocument) {
        self.table = table
        self.path = path
        self.label = label
        self.document = document
    }

    func keyPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// Reports `message` against `key` (its value's position) in this table.
    public func error(_ key: String?, _ message: String) {
        let name = [label, key].compactMap { $0 }.joined(separator: ": ")
        document.report(path: key.map(keyPath) ?? path, label: name.isEmpty ? nil : name, message: message)
    }

    /// Reports a problem with the table itself, at its header.
    public func tableError(_ message: String) {
        document.report(path: path, label: label, message: message, preferValue: false)
    }

    public func has(_ key: String) -> Bool {
        known.append(key)
        return table?[key] != nil
    }

    private func value(_ key: String) -> (any TOMLValueConvertible)? {
        known.append(key)
        return table?[key]
    }

    private func typeName(_ v: any TOMLValueConvertible) -> String {
        switch v.type {
        case .table: return "a table"
        case .array: return "an array"
        case .string: return "a string"
        case .int: return "an integer"
        case .double: return "a floating-point number"
        case .bool: return "a boolean"
        default: return "a date or time"
        }
    }

    private func wrongType(_ key: String, expected: String, found v: any TOMLValueConvertible) {
        error(key, "expected \(expected), found \(typeName(v))")
    }

    public func string(_ key: String, required: Bool = false) -> String? {
        guard let v = value(key) else {
            if required { tableError("missing required key \"\(key)\"") }
            return nil
        }
        guard let s = v.string else { wrongType(key, expected: "a string", found: v); return nil }
        return s
    }

    public func string(_ key: String, default fallback: String) -> String { string(key) ?? fallback }

    public func int(_ key: String, range: ClosedRange<Int>, required: Bool = false) -> Int? {
        guard let v = value(key) else {
            if required { tableError("missing required key \"\(key)\"") }
            return nil
        }
        guard let n = v.int else { wrongType(key, expected: "an integer", found: v); return nil }
        guard range.contains(n) else { error(key, "\(n) out of range \(range.lowerBound)…\(range.upperBound)"); return nil }
        return n
    }

    public func int(_ key: String, range: ClosedRange<Int>, default fallback: Int) -> Int { int(key, range: range) ?? fallback }

    public func bool(_ key: String, default fallback: Bool) -> Bool {
        guard let v = value(key) else { return fallback }
        guard let b = v.bool else { wrongType(key, expected: "true or false", found: v); return fallback }
        return b
    }

    public func duration(_ key: String, range: ClosedRange<Duration>, default fallback: Duration) -> Duration {
        guard let text = string(key) else { return fallback }
        guard let d = DurationText.parse(text) else {
            error(key, "\"\(text)\" is not a duration (write NUMBER UNIT, units ms s m h d w, e.g. \"500ms\", \"1m30s\")")
            return fallback
        }
        guard range.contains(d) else {
            error(key, "\(text) out of range \(DurationText.format(range.lowerBound))…\(DurationText.format(range.upperBound))")
            return fallback
        }
        return d
    }

    /// "10%" → 10.
    public func percent(_ key: String, range: ClosedRange<Int>, default fallback: Int) -> Int {
        guard let text = string(key) else { return fallback }
        guard text.hasSuffix("%"), let n = Int(text.dropLast()), String(n) + "%" == text else {
            error(key, "\"\(text)\" is not a percentage (e.g. \"10%\")")
            return fallback
        }
        guard range.contains(n) else { error(key, "\(text) out of range \(range.lowerBound)%…\(range.upperBound)%"); return fallback }
        return n
    }

    public func ipv4(_ key: String, required: Bool = false) -> IPv4Address? {
        guard let text = string(key, required: required) else { return nil }
        guard let a = IPv4Address(text) else { error(key, "\"\(text)\" is not an IPv4 address"); return nil }
        return a
    }

    public func ipv4Network(_ key: String, required: Bool = false) -> IPv4Network? {
        guard let text = string(key, required: required) else { return nil }
        guard let n = IPv4Network(text) else { error(key, "\"\(text)\" is not an IPv4 network (address/prefix with no host bits set, e.g. \"10.77.0.0/24\")"); return nil }
        return n
    }

    public func mac(_ key: String) -> MACAddress? {
        guard let text = string(key) else { return nil }
        guard let m = MACAddress(text) else { error(key, "\"\(text)\" is not a MAC address (six hex octets separated by \":\")"); return nil }
        return m
    }

    public func stringArray(_ key: String) -> [String]? {
        guard let v = value(key) else { return nil }
        guard let array = v.array else { wrongType(key, expected: "an array of strings", found: v); return nil }
        var out: [String] = []
        for element in array {
            guard let s = element.string else { error(key, "expected an array of strings, found \(typeName(element)) in it"); return nil }
            out.append(s)
        }
        return out
    }

    public func intArray(_ key: String, range: ClosedRange<Int>) -> [Int]? {
        guard let v = value(key) else { return nil }
        guard let array = v.array else { wrongType(key, expected: "an array of integers", found: v); return nil }
        var out: [Int] = []
        for element in array {
            guard let n = element.int else { error(key, "expected an array of integers, found \(typeName(element)) in it"); return nil }
            guard range.contains(n) else { error(key, "\(n) out of range \(range.lowerBound)…\(range.upperBound)"); return nil }
            out.append(n)
        }
        return out
    }

    /// A sub-table `[name]`; absent → an empty reader, so defaults apply.
    public func table(_ key: String) -> TableReader {
        let v = value(key)
        if let v, v.table == nil { wrongType(key, expected: "a table", found: v) }
        return TableReader(table: v?.table, path: keyPath(key), label: keyPath(key), document: document)
    }

    /// An array of tables `[[name]]`.
    public func tables(_ key: String) -> [TableReader] {
        guard let v = value(key) else { return [] }
        guard let array = v.array else { wrongType(key, expected: "an array of tables ([[\(key)]])", found: v); return [] }
        var out: [TableReader] = []
        for (i, element) in array.enumerated() {
            guard let t = element.table else { error(key, "expected tables ([[\(key)]]), found \(typeName(element))"); continue }
            let p = "\(keyPath(key))[\(i)]"
            out.append(TableReader(table: t, path: p, label: p, document: document))
        }
        return out
    }

    /// Every key not asked for is an error; a near miss gets a suggestion.
    public func finish() {
        for key in (table?.keys ?? []).sorted() where !known.contains(key) {
            let guess = known.min { Self.distance(key, $0) < Self.distance(key, $1) }
            let hint = guess.flatMap { Self.distance(key, $0) <= 2 ? " (did you mean \"\($0)\"?)" : nil } ?? ""
            let name = [label, key].compactMap { $0 }.joined(separator: ": ")
            document.report(path: keyPath(key), label: name, message: "unknown key\(hint)", preferValue: false)
        }
    }

    static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        guard !a.isEmpty else { return b.count }
        guard !b.isEmpty else { return a.count }
        var row = Array(0...b.count)
        for i in 1...a.count {
            var previous = row[0]
            row[0] = i
            for j in 1...b.count {
                let current = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
                previous = current
            }
        }
        return row[b.count]
    }
}
