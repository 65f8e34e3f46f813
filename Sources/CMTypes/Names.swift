/// A node's name as the inventory knows it, e.g. "node001": 1…63 of [a-z0-9-], not starting or ending with "-".
public struct NodeName: Hashable, Sendable, Comparable, Codable, CustomStringConvertible, ExpressibleByStringLiteral {
    public var rawValue: String

    /// Accepts anything; use `isValid` (config does) before trusting it as a host name.
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { rawValue = value }

    public static func isValid(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard (1...63).contains(bytes.count), bytes.first != UInt8(ascii: "-"), bytes.last != UInt8(ascii: "-") else { return false }
        return bytes.allSatisfy { (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || $0 == UInt8(ascii: "-") }
    }

    public var description: String { rawValue }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }

    public init(from decoder: any Decoder) throws { rawValue = try decoder.singleValueContainer().decode(String.self) }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(rawValue)
    }
}

/// One health check instance: a configured check applied to one target, written "CHECK@NODE" (e.g. "web@node001").
public struct CheckID: Hashable, Sendable, Comparable, TextCodable {
    public static let expected = "a check id (CHECK@NODE)"
    public var check: String
    public var node: NodeName

    public init(check: String, node: NodeName) {
        self.check = check
        self.node = node
    }

    /// Parses "CHECK@NODE"; nil when there is no "@" or either side is empty.
    public init?(_ text: String) {
        guard let at = text.lastIndex(of: "@") else { return nil }
        let check = String(text[..<at]), node = String(text[text.index(after: at)...])
        guard !check.isEmpty, !node.isEmpty else { return nil }
        self.init(check: check, node: NodeName(node))
    }

    public var description: String { "\(check)@\(node)" }
    public static func < (lhs: Self, rhs: Self) -> Bool { (lhs.node, lhs.check) < (rhs.node, rhs.check) }

}

/// Role epoch: rises on every role change so stale masters can be told apart.
public struct Epoch: Hashable, Sendable, Comparable, Codable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public var description: String { String(rawValue) }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }
    public init(from decoder: any Decoder) throws { rawValue = try decoder.singleValueContainer().decode(UInt64.self) }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(rawValue)
    }
}
