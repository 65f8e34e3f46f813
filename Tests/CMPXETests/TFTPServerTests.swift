@testable import CMPXE
import CMTypes
import Foundation
import Logging
import PXEProtocols
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The real TFTP server on 127.0.0.1: a flood of read requests stays within the caps and
/// adds no thread per transfer, and a well-behaved client then gets its file.
@Suite final class TFTPServerTests {
    let dir: String
    let payload: [UInt8]

    init() throws {
        dir = NSTemporaryDirectory() + "cm-tftp-unit-\(UInt64.random(in: 0...UInt64.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        payload = (0..<300_000).map { _ in UInt8.random(in: 0...255) }
        try Data(payload).write(to: URL(fileURLWithPath: dir + "/undionly.kpxe"))
    }

    deinit { try? FileManager.default.removeItem(atPath: dir) }

    static func threads() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Threads:") }) else { return -1 }
        return Int(line.dropFirst("Threads:".count).trimmingCharacters(in: .whitespaces)) ?? -1
    }

    static func rrq(_ file: String, _ options: [TFTPOption] = []) -> [UInt8] {
        TFTPPacket.readRequest(file: file, mode: "octet", options: options).serialize()
    }

    func waitFor(_ seconds: Double, _ what: String, _ condition: () async -> Bool) async {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while ContinuousClock.now < deadline {
            if await condition() { return }
            try? await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("not within \(seconds) s: \(what)")
    }

    @Test func atScale_floodStaysWithinTheCapsAndARealClientStillGetsItsFile() async throws {
        let counters = Counters()
        let server = try await TFTPServer(
            settings: .init(root: dir, port: 0, maxBlockSize: 1468, maxWindowSize: 8, retries: 2, maxTransfers: 128, maxPerClient: 8,
                            address: IPv4Address(127, 0, 0, 1)),
            counters: counters, logger: Logger(label: "tftp-test"))
        let to = IPv4Endpoint(address: IPv4Address(127, 0, 0, 1), port: server.port)
        let threadsBefore = Self.threads()

        func answered() -> Int { ["tftp_requests", "tftp_duplicates", "tftp_refused_busy"].map(counters.value).reduce(0, +) }
        // 400 requests from 4 endpoints (duplicates), 1,600 from 400 endpoints on 40 addresses,
        // sent no faster than the request socket's buffer holds them: the test counts them all.
        var flood: [UDPSocket] = []
        var sent = 0
        func send(_ s: UDPSocket, _ n: Int, _ request: [UInt8]) async throws {
            for _ in 0..<n {
                try s.send(request, to: to)
                sent += 1
                if sent % 50 == 0 { await waitFor(5, "requests read") { answered() >= sent - 100 } }
            }
        }
        for _ in 0..<4 {
            let s = try UDPSocket(bind: IPv4Address(127, 0, 0, 1), port: 0, reuse: false)
            try await send(s, 100, Self.rrq("undionly.kpxe", [TFTPOption(name: "timeout", value: "255")]))
            flood.append(s)
        }
        for a in 2...41 {
            for _ in 0..<10 {
                let s = try UDPSocket(bind: IPv4Address(127, 0, 0, UInt8(a)), port: 0, reuse: false)
                try await send(s, 4, Self.rrq("undionly.kpxe", [TFTPOption(name: "blksize", value: "1468")]))
                flood.append(s)
            }
        }
        await waitFor(10, "all 2,000 requests answered or dropped (\(answered()))") { answered() >= 2000 }
        let load = await server.load()
        let threadsDuring = Self.threads()
        #expect(load.peak <= 128 && load.peak >= 100, "peak \(load.peak) transfers")
        #expect(load.peakPerAddress <= 8)
        #expect(counters.value("tftp_duplicates") >= 396)
        #expect(counters.value("tftp_refused_busy") > 0)
        #expect(counters.value("tftp_requests") <= 128 + 8)
        // A thread per transfer would add ~128; the tests beside this one add a few of their own.
        #expect(threadsDuring - threadsBefore < 16, "threads \(threadsBefore) → \(threadsDuring)")

        // The flood's sockets go; their transfers end (port unreachable, or retries).
        flood.removeAll()
        let got = try await download("undionly.kpxe", from: to, deadline: .seconds(20))
        #expect(got == payload)
        await waitFor(10, "the flood's transfers ended") { await server.load().active == 0 }
        await server.stop()
    }

    @Test func duplicateRequestDoesNotStartASecondTransfer() async throws {
        let counters = Counters()
        let server = try await TFTPServer(
            settings: .init(root: dir, port: 0, maxBlockSize: 1468, maxWindowSize: 8, retries: 1, address: IPv4Address(127, 0, 0, 1)),
            counters: counters, logger: Logger(label: "tftp-test"))
        let to = IPv4Endpoint(address: IPv4Address(127, 0, 0, 1), port: server.port)
        let s = try UDPSocket(bind: IPv4Address(127, 0, 0, 1), port: 0, reuse: false)
        try s.send(Self.rrq("undionly.kpxe"), to: to)
        try s.send(Self.rrq("undionly.kpxe"), to: to)
        await waitFor(5, "the second request counted as a duplicate") { counters.value("tftp_duplicates") == 1 }
        #expect(counters.value("tftp_requests") == 1)
        #expect(await server.load().active == 1)
        await server.stop()
    }

    /// A PXE ROM's download: RRQ with tsize and blksize, OACK, ACK 0, DATA/ACK to the end.
    /// A busy answer is retried until `deadline`.
    func download(_ file: String, from server: IPv4Endpoint, deadline: Duration) async throws -> [UInt8] {
        let end = ContinuousClock.now + deadline
        var buffer = [UInt8](repeating: 0, count: 65536)
        attempt: while ContinuousClock.now < end {
            let s = try UDPSocket(bind: IPv4Address(127, 0, 0, 99), port: 0, reuse: false)
            s.setReceiveTimeout(.seconds(2))
            try s.send(Self.rrq(file, [TFTPOption(name: "tsize", value: "0"), TFTPOption(name: "blksize", value: "1468")]), to: server)
            var out: [UInt8] = []
            var expected: UInt16 = 1
            while true {
                guard let (n, from) = try s.receive(into: &buffer) else { continue attempt }
                switch try TFTPPacket(parsing: buffer[0..<n]) {
                case .error(_, let message) where message == "busy":
                    try await Task.sleep(for: .milliseconds(200))
                    continue attempt
                case .optionAck(let options):
                    #expect(options.contains(TFTPOption(name: "tsize", value: String(payload.count))))
                    try s.send(TFTPPacket.ack(block: 0).serialize(), to: from)
                case .data(let block, let data) where block == expected:
                    out += data
                    try s.send(TFTPPacket.ack(block: block).serialize(), to: from)
                    if data.count < 1468 { return out }
                    expected &+= 1
                case .data(let block, _):
                    try s.send(TFTPPacket.ack(block: block).serialize(), to: from)  // a resent block
                case let other:
                    Issue.record("unexpected \(other)")
                    return out
                }
            }
        }
        Issue.record("no download within \(deadline)")
        return []
    }
}
