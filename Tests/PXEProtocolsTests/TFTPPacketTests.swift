import CMTypes
import PXEProtocols
import Testing

@Suite struct TFTPPacketTests {
    /// A read request as iPXE and PXE ROMs send it: tsize 0 and blksize, as on the wire.
    let ipxeRRQ: [UInt8] = [0, 1] + Array("undionly.kpxe\0octet\0tsize\00\0blksize\01432\0".utf8)

    @Test func parsesAReadRequestWithOptions() throws {
        let p = try TFTPPacket(parsing: ipxeRRQ)
        #expect(p == .readRequest(file: "undionly.kpxe", mode: "octet", options: [TFTPOption(name: "tsize", value: "0"), TFTPOption(name: "blksize", value: "1432")]))
        #expect(p.serialize() == ipxeRRQ)
    }

    @Test(arguments: [
        TFTPPacket.data(block: 7, payload: [1, 2, 3]), .ack(block: 65535), .error(code: .fileNotFound, message: "no such file"),
        .optionAck([TFTPOption(name: "blksize", value: "1468"), TFTPOption(name: "windowsize", value: "8")]),
        .writeRequest(file: "x", mode: "octet", options: []),
    ])
    func roundTrips(packet: TFTPPacket) throws {
        #expect(try TFTPPacket(parsing: packet.serialize()) == packet)
    }

    @Test func dataAndErrorOnTheWire() {
        #expect(TFTPPacket.data(block: 1, payload: [0xaa]).serialize() == [0, 3, 0, 1, 0xaa])
        #expect(TFTPPacket.error(code: .accessViolation, message: "no").serialize() == [0, 5, 0, 2, 0x6e, 0x6f, 0])
    }

    static func request(_ text: String) -> [UInt8] { [0, 1] + Array(text.utf8) }

    static let badCases: [([UInt8], String)] = [
        ([0], "truncated"),
        ([0, 9], "bad_opcode"),
        (request("file"), "truncated"),
        (request("file\0octet\0blksize\0"), "bad_request"),
        (request("file\0binary\0"), "bad_request"),
        (request("\0octet\0"), "bad_request"),
        ([0, 4, 1], "truncated"),
    ]

    @Test(arguments: badCases)
    func badPacketsAreRefusedWithAReason(bytes: [UInt8], reason: String) {
        do {
            _ = try TFTPPacket(parsing: bytes)
            Issue.record("accepted \(bytes)")
        } catch {
            #expect(error.reason == reason)
        }
    }

    @Test func negotiationFollowsTheRFCs() {
        let n = TFTPNegotiation(requested: [TFTPOption(name: "tsize", value: "0"), TFTPOption(name: "blksize", value: "1468"),
                                            TFTPOption(name: "windowsize", value: "8"), TFTPOption(name: "timeout", value: "300"),
                                            TFTPOption(name: "multicast", value: "")], fileSize: 33_554_432)
        #expect(n.blockSize == 1468 && n.windowSize == 8 && n.timeoutSeconds == 1)
        #expect(n.acknowledged == [TFTPOption(name: "tsize", value: "33554432"), TFTPOption(name: "blksize", value: "1468"),
                                   TFTPOption(name: "windowsize", value: "8")])
        #expect(TFTPNegotiation(requested: [TFTPOption(name: "blksize", value: "4")], fileSize: 1).acknowledged.isEmpty)
        #expect(TFTPNegotiation(requested: [], fileSize: 1) == TFTPNegotiation(requested: [], fileSize: 2))
    }

    @Test(arguments: [
        ("/etc/passwd", TFTPPath.Refusal.absolute), ("../etc/passwd", .parentDirectory), ("a/../../b", .parentDirectory),
        ("a\\..\\b", .badCharacter), ("a\u{1}b", .badCharacter), ("", .empty), ("./.", .empty),
    ])
    func traversalIsRefused(path: String, refusal: TFTPPath.Refusal) {
        #expect(throws: refusal) { try TFTPPath.components(of: path) }
    }

    @Test func ordinaryPathsAreSplit() throws {
        #expect(try TFTPPath.components(of: "pxelinux.cfg//default") == ["pxelinux.cfg", "default"])
        #expect(try TFTPPath.components(of: "./images/debian/vmlinuz") == ["images", "debian", "vmlinuz"])
    }
}
