/// Value types shared by every ClusterMaker module: what a value *is*, not a bare String.

/// A value written as text in config files and on the wire, parsed strictly by `init?(_:)`.
/// Its Codable form is that text, so JSON carries "10.77.0.1", not a number or a struct.
public protocol TextCodable: Codable, CustomStringConvertible {
    init?(_ text: String)
    /// What the parse error says the text should have been, e.g. "an IPv4 address".
    static var expected: String { get }
}

extension TextCodable {
    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let value = Self(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not \(Self.expected): \(text)"))
        }
        self = value
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}

/// An IPv4 address in host order, parsed from dotted quad only (no shorthand forms).
public struct IPv4Address: Hashable, Sendable, Comparable, TextCodable {
    public static let expected = "an IPv4 address"
    public var rawValue: UInt32

    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        rawValue = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
    }

    /// Strict dotted-quad parser: four decimal octets 0…255, no leading "+", at most 3 digits each.
    public init?(_ text: some StringProtocol) {
        var value: UInt32 = 0
        var octets = 0
        for part in text.split(separator: ".", omittingEmptySubsequences: false) {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy({ $0.isASCII && $0.isNumber }),
                  let octet = UInt32(part), octet <= 255 else { return nil }
            value = value << 8 | octet
            octets += 1
        }
        guard octets == 4 else { return nil }
        rawValue = value
    }

    public var octets: (UInt8, UInt8, UInt8, UInt8) {
        (UInt8(rawValue >> 24), UInt8(rawValue >> 16 & 0xff), UInt8(rawValue >> 8 & 0xff), UInt8(rawValue & 0xff))
    }

    public var description: String {
        let o = octets
        return "\(o.0).\(o.1).\(o.2).\(o.3)"
    }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }

}

/// An IPv4 network in CIDR notation, e.g. 10.77.0.0/24. The address must be the network address.
public struct IPv4Network: Hashable, Sendable, TextCodable {
    public static let expected = "an IPv4 network"
    public var address: IPv4Address
    public var prefixLength: Int

    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let address = IPv4Address(parts[0]),
              parts[1].count <= 2, parts[1].allSatisfy({ $0.isASCII && $0.isNumber }),
              let length = Int(parts[1]), (0...32).contains(length) else { return nil }
        self.address = address
        self.prefixLength = length
        guard address.rawValue & ~mask == 0 else { return nil }
    }

    public var mask: UInt32 { prefixLength == 0 ? 0 : UInt32.max << UInt32(32 - prefixLength) }

    public func contains(_ ip: IPv4Address) -> Bool { ip.rawValue & mask == address.rawValue }

    public var description: String { "\(address)/\(prefixLength)" }

}

/// An Ethernet MAC address, written as six colon-separated hex octets, printed in lower case.
public struct MACAddress: Hashable, Sendable, TextCodable {
    public static let expected = "a MAC address"
    public var bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == 6 else { return nil }
        self.bytes = bytes
    }

    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 6 else { return nil }
        var bytes: [UInt8] = []
        for part in parts {
            guard part.count == 2, let b = UInt8(part, radix: 16) else { return nil }
            bytes.append(b)
        }
        self.bytes = bytes
    }

    public var description: String {
        bytes.map { b in
            let s = String(b, radix: 16)
            return s.count == 1 ? "0" + s : s
        }.joined(separator: ":")
    }

}

/// An address with its prefix length as it sits on an interface, e.g. 10.88.0.100/24. Unlike
/// `IPv4Network`, host bits are the point. Written without "/N" it means /32.
public struct IPv4InterfaceAddress: Hashable, Sendable, TextCodable {
    public static let expected = "an IPv4 address with prefix length"
    public var address: IPv4Address
    public var prefixLength: Int

    public init(address: IPv4Address, prefixLength: Int) {
        self.address = address
        self.prefixLength = prefixLength
    }

    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let address = IPv4Address(parts[0]) else { return nil }
        self.address = address
        if parts.count == 1 {
            prefixLength = 32
        } else {
            guard parts[1].count <= 2, parts[1].allSatisfy({ $0.isASCII && $0.isNumber }),
                  let length = Int(parts[1]), (0...32).contains(length) else { return nil }
            prefixLength = length
        }
    }

    public var description: String { "\(address)/\(prefixLength)" }
}

/// An IPv4 address and TCP port, written "10.77.0.11:8080" ("0.0.0.0:80" for every address).
public struct IPv4Endpoint: Hashable, Sendable, TextCodable {
    public static let expected = "an IPv4 address and port (e.g. \"10.77.0.11:8080\")"
    public var address: IPv4Address
    public var port: UInt16

    public init(address: IPv4Address, port: UInt16) {
        self.address = address
        self.port = port
    }

    public init?(_ text: some StringProtocol) {
        guard let colon = text.lastIndex(of: ":"), let address = IPv4Address(text[..<colon]) else { return nil }
        let digits = text[text.index(after: colon)...]
        guard !digits.isEmpty, digits.count <= 5, digits.allSatisfy(\.isASCII), let port = UInt16(digits), port > 0 else { return nil }
        self.init(address: address, port: port)
    }


    public var description: String { "\(address):\(port)" }
}
