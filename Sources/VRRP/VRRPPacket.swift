import CMTypes

/// IP protocol number of VRRP and its IPv4 multicast group (RFC 5798 section 5.1.1.2, 5.2).
public enum VRRP {
    public static let ipProtocol: UInt8 = 112
    public static let multicastGroup = IPv4Address(224, 0, 0, 18)
    /// Section 5.1.1.3: sent with TTL 255, and a receiver MUST discard any other.
    public static let ttl: UInt8 = 255
    /// Section 5.2.1 / 5.2.2: version 3, type 1 (ADVERTISEMENT) is the only type.
    public static let version: UInt8 = 3
    public static let typeAdvertisement: UInt8 = 1
    /// Priority of the router that owns the addresses (5.2.4); 0 means "the master is leaving".
    public static let ownerPriority: UInt8 = 255
    /// Largest Max Adver Int: a 12-bit field of centiseconds (5.2.7).
    public static let maxAdvertIntervalCentiseconds: UInt16 = 4095
}

/// Why a received datagram is not an advertisement this router may act on. Each case is a
/// counter in `cmctl vip status`, so the names are stable.
public enum VRRPParseError: Error, Equatable, Sendable, CustomStringConvertible {
    case truncated(String)
    case notIPv4(version: UInt8)
    case notVRRP(protocol: UInt8)
    case badTTL(UInt8)
    case badVersion(UInt8)
    case badType(UInt8)
    case badLength(String)
    case badChecksum(expected: UInt16, found: UInt16)

    /// Counter name.
    public var reason: String {
        switch self {
        case .truncated: return "truncated"
        case .notIPv4: return "not_ipv4"
        case .notVRRP: return "not_vrrp"
        case .badTTL: return "bad_ttl"
        case .badVersion: return "bad_version"
        case .badType: return "bad_type"
        case .badLength: return "bad_length"
        case .badChecksum: return "bad_checksum"
        }
    }

    public var description: String {
        switch self {
        case .truncated(let what): return "truncated: \(what)"
        case .notIPv4(let v): return "IP version \(v), not 4"
        case .notVRRP(let p): return "IP protocol \(p), not 112"
        case .badTTL(let t): return "TTL \(t), not 255 (RFC 5798 7.1: from off-link, discarded)"
        case .badVersion(let v): return "VRRP version \(v), not 3"
        case .badType(let t): return "VRRP type \(t), not 1 (ADVERTISEMENT)"
        case .badLength(let why): return "bad length: \(why)"
        case .badChecksum(let e, let f): return "checksum 0x\(String(f, radix: 16)), expected 0x\(String(e, radix: 16))"
        }
    }
}

/// A VRRPv3 ADVERTISEMENT for IPv4 (RFC 5798 section 5.1, 5.2): the VRRP part only; the kernel
/// writes the IP header when sending on a raw socket.
///
///     0                   1                   2                   3
///     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
///    |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
///    |(rsvd) |     Max Adver Int     |          Checksum             |
///    |                       IPvX Address(es)                        |
public struct VRRPAdvertisement: Sendable, Equatable {
    public var vrid: UInt8
    public var priority: UInt8
    /// Max Adver Int in centiseconds (12 bits).
    public var maxAdvertInterval: UInt16
    public var addresses: [IPv4Address]

    public init(vrid: UInt8, priority: UInt8, maxAdvertInterval: UInt16, addresses: [IPv4Address]) {
        self.vrid = vrid
        self.priority = priority
        self.maxAdvertInterval = maxAdvertInterval & 0x0fff
        self.addresses = addresses
    }

    /// Length of the VRRP message with `count` addresses.
    public static func length(addressCount count: Int) -> Int { 8 + 4 * count }

    /// Parses the VRRP message (after the IP header) and verifies its checksum over the IPv4
    /// pseudo-header (section 5.2.8) built from `source` and `destination`.
    public init(parsing bytes: some Collection<UInt8>, source: IPv4Address, destination: IPv4Address) throws(VRRPParseError) {
        let b = Array(bytes)
        guard b.count >= 8 else { throw .truncated("VRRP header needs 8 bytes, got \(b.count)") }
        let version = b[0] >> 4, type = b[0] & 0x0f
        guard version == VRRP.version else { throw .badVersion(version) }
        guard type == VRRP.typeAdvertisement else { throw .badType(type) }
        let count = Int(b[3])
        let wanted = Self.length(addressCount: count)
        guard b.count >= wanted else { throw .badLength("\(count) addresses need \(wanted) bytes, got \(b.count)") }
        guard count > 0 else { throw .badLength("Count IPvX Addr is 0") }
        // The checksum covers the whole VRRP message as received, trailing bytes included.
        let found = UInt16(b[6]) << 8 | UInt16(b[7])
        let sum = Self.checksum(b, zeroingChecksumField: true, source: source, destination: destination)
        guard sum == found else { throw .badChecksum(expected: sum, found: found) }
        guard b.count == wanted else { throw .badLength("\(count) addresses take \(wanted) bytes, message has \(b.count)") }
        vrid = b[1]
        priority = b[2]
        maxAdvertInterval = (UInt16(b[4]) << 8 | UInt16(b[5])) & 0x0fff
        var addresses: [IPv4Address] = []
        addresses.reserveCapacity(count)
        for i in 0..<count {
            let o = 8 + 4 * i
            addresses.append(IPv4Address(b[o], b[o + 1], b[o + 2], b[o + 3]))
        }
        self.addresses = addresses
    }

    /// The message with its checksum filled in for this source and destination.
    public func serialize(source: IPv4Address, destination: IPv4Address) -> [UInt8] {
        var b: [UInt8] = []
        b.reserveCapacity(Self.length(addressCount: addresses.count))
        b.append(VRRP.version << 4 | VRRP.typeAdvertisement)
        b.append(vrid)
        b.append(priority)
        b.append(UInt8(truncatingIfNeeded: addresses.count))
        b.append(UInt8(maxAdvertInterval >> 8 & 0x0f))
        b.append(UInt8(maxAdvertInterval & 0xff))
        b.append(0)
        b.append(0)
        for a in addresses {
            let o = a.octets
            b.append(contentsOf: [o.0, o.1, o.2, o.3])
        }
        let sum = Self.checksum(b, zeroingChecksumField: false, source: source, destination: destination)
        b[6] = UInt8(sum >> 8)
        b[7] = UInt8(sum & 0xff)
        return b
    }

    /// Internet checksum (RFC 1071) of the IPv4 pseudo-header (source, destination, zero,
    /// protocol 112, VRRP length) followed by the message.
    static func checksum(_ message: [UInt8], zeroingChecksumField: Bool, source: IPv4Address, destination: IPv4Address) -> UInt16 {
        var sum: UInt32 = 0
        sum += (source.rawValue >> 16) + (source.rawValue & 0xffff)
        sum += (destination.rawValue >> 16) + (destination.rawValue & 0xffff)
        sum += UInt32(VRRP.ipProtocol)
        sum += UInt32(message.count)
        var i = 0
        while i + 1 < message.count {
            if !(zeroingChecksumField && i == 6) {
                sum += UInt32(message[i]) << 8 | UInt32(message[i + 1])
            }
            i += 2
        }
        if i < message.count { sum += UInt32(message[i]) << 8 }
        while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
        return ~UInt16(sum)
    }
}

/// An IPv4 datagram carrying VRRP, as a raw IPv4 socket delivers it (IP header included).
public struct VRRPDatagram: Sendable, Equatable {
    public var source: IPv4Address
    public var destination: IPv4Address
    public var ttl: UInt8
    public var advertisement: VRRPAdvertisement

    public init(source: IPv4Address, destination: IPv4Address, ttl: UInt8 = VRRP.ttl, advertisement: VRRPAdvertisement) {
        self.source = source
        self.destination = destination
        self.ttl = ttl
        self.advertisement = advertisement
    }

    /// Parses and validates per RFC 5798 section 7.1: IPv4, protocol 112, TTL 255, version 3,
    /// type ADVERTISEMENT, a length that fits the address count, a good checksum.
    public init(parsing bytes: some Collection<UInt8>) throws(VRRPParseError) {
        let b = Array(bytes)
        guard b.count >= 20 else { throw .truncated("IPv4 header needs 20 bytes, got \(b.count)") }
        let version = b[0] >> 4
        guard version == 4 else { throw .notIPv4(version: version) }
        let headerLength = Int(b[0] & 0x0f) * 4
        guard headerLength >= 20, b.count >= headerLength else { throw .truncated("IPv4 header length \(headerLength), datagram \(b.count) bytes") }
        let totalLength = Int(b[2]) << 8 | Int(b[3])
        guard totalLength >= headerLength, totalLength <= b.count else {
            throw .badLength("IPv4 total length \(totalLength) with \(b.count) bytes received")
        }
        guard b[9] == VRRP.ipProtocol else { throw .notVRRP(protocol: b[9]) }
        ttl = b[8]
        guard ttl == VRRP.ttl else { throw .badTTL(ttl) }
        source = IPv4Address(b[12], b[13], b[14], b[15])
        destination = IPv4Address(b[16], b[17], b[18], b[19])
        advertisement = try VRRPAdvertisement(parsing: b[headerLength..<totalLength], source: source, destination: destination)
    }
}
