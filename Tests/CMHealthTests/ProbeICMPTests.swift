@testable import CMHealth
import CMTypes
import Foundation
import NIOCore
import NIOPosix
import Testing

private func bytes(_ hex: String) -> [UInt8] {
    var out: [UInt8] = []
    var i = hex.startIndex
    while i < hex.endIndex, let j = hex.index(i, offsetBy: 2, limitedBy: hex.endIndex), let b = UInt8(hex[i..<j], radix: 16) {
        out.append(b)
        i = j
    }
    return out
}

@Suite struct ProbeICMPCodecTests {
    /// `ping -c1 -s 16 127.0.0.1` (iputils 20221126) as a raw socket received it: the
    /// request, then the kernel's reply, each behind its IPv4 header.
    static let capturedRequest = bytes("4500002c3e6f40004001fe5f7f0000017f0000010800abb95de40001ad51066b0000000039a4010000000000")
    static let capturedReply = bytes("4500002c3e70000040013e5f7f0000017f0000010000b3b95de40001ad51066b0000000039a4010000000000")
    static let capturedPayload = bytes("ad51066b0000000039a4010000000000")

    @Test func parsesCapturedRequestAndReply() throws {
        for (packet, kind) in [(Self.capturedRequest, ICMPEcho.Kind.echoRequest), (Self.capturedReply, .echoReply)] {
            var buffer = ByteBuffer(bytes: packet)
            let ip = try IPv4Header(parsing: &buffer)
            #expect(ip.source == IPv4Address(127, 0, 0, 1) && ip.destination == IPv4Address(127, 0, 0, 1))
            #expect(ip.protocol == IPv4Header.icmp && ip.headerLength == 20)
            let echo = try ICMPEcho(parsing: &buffer)
            #expect(echo == ICMPEcho(kind: kind, identifier: 0x5de4, sequence: 1, payload: Self.capturedPayload))
        }
    }

    @Test func serializesWhatPingSent() {
        var buffer = ByteBuffer()
        ICMPEcho(kind: .echoRequest, identifier: 0x5de4, sequence: 1, payload: Self.capturedPayload).serialize(into: &buffer)
        #expect(Array(buffer.readableBytesView) == Array(Self.capturedRequest[20...]))
    }

    @Test func roundTrip() throws {
        for payload in [[], [1], Array("cm-healthd".utf8), [UInt8](repeating: 0xff, count: 57)] {
            let echo = ICMPEcho(kind: .echoReply, code: 0, identifier: 0xbeef, sequence: 0xffff, payload: payload)
            var buffer = ByteBuffer()
            echo.serialize(into: &buffer)
            #expect(ICMPEcho.checksum(buffer.readableBytesView) == 0)
            #expect(try ICMPEcho(parsing: &buffer) == echo)
        }
    }

    /// RFC 1071 §3's example, and the odd-length case.
    @Test func internetChecksum() {
        #expect(ICMPEcho.checksum([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]) == ~UInt16(0xddf2))
        #expect(ICMPEcho.checksum([0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]) == 0xf7ff)
        #expect(ICMPEcho.checksum([0x01]) == ~UInt16(0x0100))
        #expect(ICMPEcho.checksum([UInt8]()) == 0xffff)
    }

    static let badEchoes: [([UInt8], ICMPEcho.ParseError)] = [
        ([0, 0, 0], .tooShort(3)),
        ([], .tooShort(0)),
        (Array(capturedReply[20...].enumerated().map { $0.offset == 10 ? $0.element ^ 0x01 : $0.element }), .badChecksum(0xfeff)),
        // Destination unreachable (type 3, code 1), valid checksum.
        ([0x03, 0x01, 0xfc, 0xfe, 0, 0, 0, 0], .notEcho(type: 3, code: 1)),
    ]

    @Test(arguments: badEchoes)
    func rejectsBadEchoes(packet: [UInt8], error: ICMPEcho.ParseError) {
        var buffer = ByteBuffer(bytes: packet)
        #expect(throws: error) { try ICMPEcho(parsing: &buffer) }
    }

    @Test func rejectsOversizedEcho() {
        var buffer = ByteBuffer(repeating: 0, count: 8 + 1473)
        #expect(throws: ICMPEcho.ParseError.tooLong(8 + 1473)) { try ICMPEcho(parsing: &buffer) }
    }

    static let badIPHeaders: [([UInt8], IPv4Header.ParseError)] = [
        (Array(capturedReply[..<19]), .tooShort(19)),
        ([0x65] + capturedReply.dropFirst(), .notVersion4(6)),
        ([0x44] + capturedReply.dropFirst(), .badHeaderLength(16)),
        ([0x4f] + capturedReply.dropFirst(), .badHeaderLength(60)),
        (Array(capturedReply[..<43]), .badTotalLength(44)),
    ]

    @Test(arguments: badIPHeaders)
    func rejectsBadIPHeaders(packet: [UInt8], error: IPv4Header.ParseError) {
        var buffer = ByteBuffer(bytes: packet)
        #expect(throws: error) { try IPv4Header(parsing: &buffer) }
    }

    @Test func ipOptionsAndPaddingAreSkipped() throws {
        // IHL 6 (one word of options, four NOPs), total length 48, then 2 bytes of padding.
        var packet = Self.capturedReply
        packet[0] = 0x46
        packet[3] = 48
        packet.insert(contentsOf: [1, 1, 1, 1], at: 20)
        packet += [0xaa, 0xbb]
        var buffer = ByteBuffer(bytes: packet)
        let ip = try IPv4Header(parsing: &buffer)
        #expect(ip.headerLength == 24)
        let echo = try ICMPEcho(parsing: &buffer)
        #expect(echo.payload == Self.capturedPayload)
    }
}

@Suite struct ProbePingTableTests {
    let a = IPv4Address(10, 0, 0, 1), b = IPv4Address(10, 0, 0, 2)

    @Test func matchesBySequenceTokenAndSource() throws {
        var t = PingTable<String>()
        let p1Slot = t.add(a, waiter: "one")
        let p1 = try #require(p1Slot)
        let p2Slot = t.add(b, waiter: "two")
        let p2 = try #require(p2Slot)
        #expect(p1.sequence != p2.sequence && p1.token != p2.token)
        #expect(t.match(sequence: p1.sequence, token: p1.token, from: b) == nil)  // wrong source
        #expect(t.match(sequence: p1.sequence, token: p2.token, from: a) == nil)  // stale token
        #expect(t.match(sequence: p1.sequence, token: p1.token, from: a)?.waiter == "one")
        #expect(t.match(sequence: p1.sequence, token: p1.token, from: a) == nil)  // only once
        #expect(t.remove(sequence: p2.sequence, token: p2.token)?.waiter == "two")
        #expect(t.entries.isEmpty)
    }

    @Test func timedOutSequenceReusedIsNotConfused() throws {
        var t = PingTable<Int>(capacity: 3)
        var seen: [UInt16: UInt64] = [:]
        // Fill, free, refill many times round the 16-bit space: sequences wrap, tokens do not.
        for i in 0..<70_000 {
            let pSlot = t.add(a, waiter: i)
            let p = try #require(pSlot)
            if let old = seen[p.sequence] { #expect(old != p.token) }
            seen[p.sequence] = p.token
            #expect(t.remove(sequence: p.sequence, token: p.token)?.waiter == i)
        }
    }

    @Test func fullTableRefuses() throws {
        var t = PingTable<Int>(capacity: 2)
        let firstSlot = t.add(a, waiter: 1)
        let first = try #require(firstSlot)
        #expect(t.add(a, waiter: 2) != nil)
        #expect(t.add(a, waiter: 3) == nil)
        _ = t.remove(sequence: first.sequence, token: first.token)
        let againSlot = t.add(a, waiter: 4)
        let again = try #require(againSlot)
        #expect(t.entries.count == 2 && again.sequence != first.sequence)
        #expect(t.removeAll().count == 2 && t.entries.isEmpty)
    }
}

/// Against the loopback interface with each socket kind.
@Suite(.serialized) struct ProbeICMPTests {
    static let rangeFile = "/proc/sys/net/ipv4/ping_group_range"

    /// Opens a pinger of one kind. A datagram socket needs our gid inside
    /// ping_group_range; as root the range is widened just for the socket() call and put
    /// back at once (the socket stays usable). nil, with the reason printed, if not allowed.
    static func open(_ kind: ICMPPinger.SocketKind) -> ICMPPinger? {
        if let pinger = try? ICMPPinger(group: MultiThreadedEventLoopGroup.singleton, kinds: [kind]) { return pinger }
        if kind == .datagram, getuid() == 0, let old = try? String(contentsOfFile: rangeFile, encoding: .utf8),
           (try? "0 2147483647".write(toFile: rangeFile, atomically: false, encoding: .utf8)) != nil {
            defer { try? old.write(toFile: rangeFile, atomically: false, encoding: .utf8) }
            if let pinger = try? ICMPPinger(group: MultiThreadedEventLoopGroup.singleton, kinds: [kind]) { return pinger }
        }
        do {
            _ = try ICMPPinger(group: MultiThreadedEventLoopGroup.singleton, kinds: [kind])
        } catch {
            print("skipped: \(kind) ICMP socket not allowed here: \(error)")
        }
        return nil
    }

    @Test(arguments: ICMPPinger.SocketKind.allCases)
    func echoFromLoopback(kind: ICMPPinger.SocketKind) async {
        guard let pinger = Self.open(kind) else { return }
        #expect(pinger.kind == kind)
        for address in [IPv4Address(127, 0, 0, 1), IPv4Address(127, 0, 0, 2)] {
            let r = await pinger.ping(address, timeout: .seconds(1))
            #expect(r.ok, "\(kind) \(address): \(r.message)")
            #expect(r.message.hasPrefix("echo reply in ") && r.latency < .seconds(1), "\(r.message)")
        }
        await pinger.shutdown()
        let after = await pinger.ping(IPv4Address(127, 0, 0, 1), timeout: .seconds(1))
        #expect(!after.ok && after.message == "icmp: pinger shut down", "\(after.message)")
    }

    @Test(arguments: ICMPPinger.SocketKind.allCases)
    func manyPingsAtOnce(kind: ICMPPinger.SocketKind) async {
        guard let pinger = Self.open(kind) else { return }
        let oks = await withTaskGroup(of: Bool.self) { group in
            for i in 0..<200 {
                group.addTask { await pinger.ping(IPv4Address(127, 0, 0, UInt8(1 + i % 4)), timeout: .seconds(2)).ok }
            }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(oks == 200)
        await pinger.shutdown()
    }

    @Test func noKindToTryIsAnError() {
        #expect(throws: ICMPPingerError.self) { try ICMPPinger(group: MultiThreadedEventLoopGroup.singleton, kinds: []) }
    }
}
