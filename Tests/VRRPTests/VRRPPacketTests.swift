import CMTypes
import Testing
@testable import VRRP

/// Adverts captured with tcpdump from keepalived 2.2.7 (Debian 12), `vrrp_version 3`,
/// VRID 51, priority 150, virtual_ipaddress 10.88.0.100 and 10.88.0.101, from 10.88.0.11.
enum KeepalivedCapture {
    static func bytes(_ hex: String) -> [UInt8] {
        let digits = Array(hex.filter { !$0.isWhitespace })
        return stride(from: 0, to: digits.count, by: 2).map { UInt8(String(digits[$0...$0 + 1]), radix: 16)! }
    }
    /// advert_int 0.1 (10 centiseconds).
    static let interval100ms = bytes("45c0 0024 0009 0000 ff70 d02b 0a58 000b e000 0012 3133 9602 000a 3851 0a58 0064 0a58 0065")
    /// advert_int 0.01 (1 centisecond).
    static let interval10ms = bytes("45c0 0024 006a 0000 ff70 cfca 0a58 000b e000 0012 3133 9602 0001 385a 0a58 0064 0a58 0065")
    /// Sent on SIGTERM: priority 0, "the master is leaving".
    static let shutdown = bytes("45c0 0024 006b 0000 ff70 cfc9 0a58 000b e000 0012 3133 0002 0001 ce5a 0a58 0064 0a58 0065")
}

@Suite struct VRRPPacketTests {
    let m1 = IPv4Address(10, 88, 0, 11)
    let vips = [IPv4Address(10, 88, 0, 100), IPv4Address(10, 88, 0, 101)]

    @Test(arguments: [
        (KeepalivedCapture.interval100ms, UInt8(150), UInt16(10)),
        (KeepalivedCapture.interval10ms, UInt8(150), UInt16(1)),
        (KeepalivedCapture.shutdown, UInt8(0), UInt16(1)),
    ])
    func parsesKeepalivedAdverts(bytes: [UInt8], priority: UInt8, interval: UInt16) throws {
        let d = try VRRPDatagram(parsing: bytes)
        #expect(d.source == m1)
        #expect(d.destination == VRRP.multicastGroup)
        #expect(d.ttl == 255)
        #expect(d.advertisement == VRRPAdvertisement(vrid: 51, priority: priority, maxAdvertInterval: interval, addresses: vips))
    }

    @Test(arguments: [KeepalivedCapture.interval100ms, KeepalivedCapture.interval10ms, KeepalivedCapture.shutdown])
    func serializesExactlyAsKeepalived(bytes: [UInt8]) throws {
        let d = try VRRPDatagram(parsing: bytes)
        // The VRRP part, checksum included, is byte for byte what keepalived sent.
        #expect(d.advertisement.serialize(source: d.source, destination: d.destination) == Array(bytes[20...]))
    }

    @Test func roundTripsUnicast() throws {
        let a = VRRPAdvertisement(vrid: 7, priority: 254, maxAdvertInterval: 4095, addresses: [IPv4Address(192, 0, 2, 1)])
        let peer = IPv4Address(10, 88, 0, 12)
        let bytes = a.serialize(source: m1, destination: peer)
        #expect(try VRRPAdvertisement(parsing: bytes, source: m1, destination: peer) == a)
        // The pseudo-header is part of the checksum: the same bytes to another address fail.
        #expect(throws: VRRPParseError.self) { try VRRPAdvertisement(parsing: bytes, source: m1, destination: VRRP.multicastGroup) }
    }

    static func mutated(_ body: (inout [UInt8]) -> Void) -> [UInt8] {
        var b = KeepalivedCapture.interval100ms
        body(&b)
        return b
    }

    @Test(arguments: [
        (mutated { $0[8] = 254 }, "bad_ttl"),
        (mutated { $0[9] = 17 }, "not_vrrp"),
        (mutated { $0[0] = 0x65 }, "not_ipv4"),
        (mutated { $0[20] = 0x21 }, "bad_version"),
        (mutated { $0[20] = 0x32 }, "bad_type"),
        (mutated { $0[22] = 151 }, "bad_checksum"),
        (mutated { $0[23] = 3 }, "bad_length"),
        (mutated { $0[23] = 0 }, "bad_length"),
        (mutated { $0.removeLast(4); $0[3] = 0x20 }, "bad_length"),
        (mutated { $0[3] = 0x40 }, "bad_length"),
        (Array(KeepalivedCapture.interval100ms.prefix(19)), "truncated"),
        (Array(KeepalivedCapture.interval100ms.prefix(20)) , "bad_length"),
        ([], "truncated"),
    ])
    func rejectsBadDatagrams(bytes: [UInt8], reason: String) {
        do {
            _ = try VRRPDatagram(parsing: bytes)
            Issue.record("accepted a bad datagram, expected \(reason)")
        } catch {
            #expect(error.reason == reason, "\(error)")
        }
    }

    @Test func checksumErrorSaysBoth() {
        let bytes = Self.mutated { $0[22] = 151 }
        #expect(throws: VRRPParseError.badChecksum(expected: 0x3751, found: 0x3851)) { try VRRPDatagram(parsing: bytes) }
    }
}
