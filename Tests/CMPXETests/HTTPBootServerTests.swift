import CMConfig
import CMImage
@testable import CMPXE
import CMTypes
import CMWire
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The connection state machine alone: no sockets, time passed in.
@Suite struct HTTPConnectionMachineTests {
    let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
    let timeouts = HTTPConnectionMachine.Timeouts(head: .seconds(10), idle: .seconds(30), send: .seconds(60))
    func head(_ uri: String) -> HTTPRequestHead { HTTPRequestHead(version: .http1_1, method: .GET, uri: uri) }

    @Test func aPipelinedRequestWaitsForThePreviousResponseToBeSentAndReadingStops() {
        var m = HTTPConnectionMachine(timeouts: timeouts, now: t0)
        #expect(m.start() == [.scheduleTimer(t0 + .seconds(10))])
        #expect(m.handle(.read) == [.read])
        #expect(m.handle(.bytesReceived(t0)) == [])
        #expect(m.handle(.requestHead(head("/a"))) == [])
        // Serving: the send timeout replaces the head timeout, which is later, so the armed
        // timer stays and re-arms when it fires.
        #expect(m.handle(.requestEnd(t0 + .seconds(1))) == [.serve(head("/a"))])
        #expect(m.handle(.read) == [], "no reading while a response is in flight")
        #expect(m.handle(.requestHead(head("/b"))) == [] && m.handle(.requestEnd(t0 + .seconds(1))) == [])
        // Written is not sent: nothing happens until the machine hears it was sent.
        let sent = t0 + .seconds(2)
        #expect(m.handle(.responseSent(sent, keepAlive: true)) == [.serve(head("/b"))])
        #expect(m.handle(.responseSent(sent, keepAlive: true)) == [.read], "the withheld read goes on once nothing waits")
        #expect(m.handle(.timer(t0 + .seconds(10))) == [.scheduleTimer(sent + .seconds(30))], "idle now: 30 s from the response")
    }

    @Test func idleThenHeadTimeoutsAndCloseWithoutKeepAlive() {
        var m = HTTPConnectionMachine(timeouts: timeouts, now: t0)
        _ = m.start()
        #expect(m.handle(.timer(t0 + .seconds(10))) == [.close(.head)], "no head within 10 s of accept")
        #expect(m.isClosed && m.handle(.read) == [])

        var k = HTTPConnectionMachine(timeouts: timeouts, now: t0)
        _ = k.start()
        _ = k.handle(.requestHead(head("/a")))
        _ = k.handle(.requestEnd(t0))
        _ = k.handle(.responseSent(t0, keepAlive: true))
        // Idle: 30 s from the response; a first byte brings the head timeout, 10 s from it.
        #expect(k.handle(.timer(t0 + .seconds(10))) == [.scheduleTimer(t0 + .seconds(30))])
        #expect(k.handle(.bytesReceived(t0 + .seconds(12))) == [.scheduleTimer(t0 + .seconds(22))])
        #expect(k.handle(.timer(t0 + .seconds(22))) == [.close(.head)])

        var c = HTTPConnectionMachine(timeouts: timeouts, now: t0)
        _ = c.start()
        _ = c.handle(.requestHead(head("/a")))
        _ = c.handle(.requestEnd(t0))
        #expect(c.handle(.responseSent(t0, keepAlive: false)) == [.close(nil)])
    }

    @Test func theSendTimeoutCountsFromTheLastProgress() {
        var m = HTTPConnectionMachine(timeouts: timeouts, now: t0)
        _ = m.start()
        _ = m.handle(.requestHead(head("/big")))
        _ = m.handle(.requestEnd(t0))
        _ = m.handle(.timer(t0 + .seconds(10)))  // the head timer fires: re-armed for the send timeout
        #expect(m.handle(.responseProgress(t0 + .seconds(50))) == [])
        #expect(m.handle(.timer(t0 + .seconds(60))) == [.scheduleTimer(t0 + .seconds(110))], "progress at 50 s moves the deadline")
        #expect(m.handle(.timer(t0 + .seconds(110))) == [.close(.send)])
    }
}

@Suite struct HTTPConnectionTableTests {
    @Test func capsCountEachAddressAndRefusalsAreLoggedOnceAMinute() {
        var limits = PxedConfig.HTTPLimits()
        limits.maxConnections = 3
        limits.maxConnectionsPerClient = 2
        let table = HTTPConnectionTable()
        let a = IPv4Address("10.0.0.1")!, b = IPv4Address("10.0.0.2")!, t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
        #expect(table.admit(a, limits: limits, now: t0) == .admitted && table.admit(a, limits: limits, now: t0) == .admitted)
        #expect(table.admit(a, limits: limits, now: t0) == .refused("2 connections open from that address (http_max_connections_per_client)", log: 0))
        #expect(table.admit(b, limits: limits, now: t0) == .admitted)
        #expect(table.admit(b, limits: limits, now: t0 + .seconds(1)) == .refused("3 connections open (http_max_connections)", log: nil))
        #expect(table.admit(b, limits: limits, now: t0 + .seconds(2)) == .refused("3 connections open (http_max_connections)", log: nil))
        #expect(table.admit(b, limits: limits, now: t0 + .seconds(60)) == .refused("3 connections open (http_max_connections)", log: 2),
                "a minute on: logged, with the two held back")
        table.release(a)
        #expect(table.total == 2 && table.admit(b, limits: limits, now: t0) == .admitted)
    }

    @Test func theListenersAreTheBootInterfaceAddresses() throws {
        var c = try pxedConfig()
        #expect(HTTPBootServer.listeners(c.pxed) == [.init(address: IPv4Address("10.77.0.1")!, freebind: false),
                                                     .init(address: IPv4Address("10.77.0.100")!, freebind: true)])
        c.pxed.bootAddress = nil
        #expect(HTTPBootServer.listeners(c.pxed) == [.init(address: IPv4Address("10.77.0.1")!, freebind: false)])
    }
}

/// The real HTTP boot server on 127.0.0.1, driven by raw sockets that behave as bad clients do.
@Suite(.serialized) final class HTTPBootServerTests {
    let dir: String
    let logger = Logger(label: "test")

    init() throws {
        dir = NSTemporaryDirectory() + "cm-pxe-http-\(UInt64.random(in: 0...UInt64.max))"
        try FileManager.default.createDirectory(atPath: dir + "/images/debian", withIntermediateDirectories: true)
        try Data("x".utf8).write(to: URL(fileURLWithPath: dir + "/images/debian/vmlinuz"))
        try Data(count: 4 << 20).write(to: URL(fileURLWithPath: dir + "/images/debian/big.img"))
    }

    deinit { try? FileManager.default.removeItem(atPath: dir) }

    /// Runs `body` against a server with these limits, then stops it.
    func withServer(_ limits: PxedConfig.HTTPLimits, _ body: (HTTPBootServer, Int) async throws -> Void) async throws {
        var c = try pxedConfig()
        c.pxed.imagesDirectory = dir + "/images"
        c.pxed.http = limits
        let service = try PXEService(config: c, stateDirectory: dir, events: EventHub(), logger: logger)
        // One loop: connections are admitted in the order they are accepted.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let server = try await HTTPBootServer(service: service, listeners: [.init(address: IPv4Address("127.0.0.1")!, freebind: false)],
                                              port: 0, group: group)
        do {
            try await body(server, try #require(server.ports.first))
        } catch {
            await server.close()
            try? await group.shutdownGracefully()
            throw error
        }
        await server.close()
        try? await group.shutdownGracefully()
    }

    func limits(head: Duration = .seconds(5), idle: Duration = .seconds(5), send: Duration = .seconds(5),
                max: Int = 512, perClient: Int = 32) -> PxedConfig.HTTPLimits {
        var l = PxedConfig.HTTPLimits()
        l.headerTimeout = head
        l.idleTimeout = idle
        l.sendTimeout = send
        l.maxConnections = max
        l.maxConnectionsPerClient = perClient
        return l
    }

    /// This process's descriptors open on files whose path starts with `prefix`. Not all of
    /// them: the other suites run beside this one and open sockets and files of their own.
    static func descriptors(under prefix: String) -> Int {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return fds.filter { (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\($0)"))?.hasPrefix(prefix) == true }.count
    }

    static func eventually(_ seconds: Double, _ condition: () -> Bool) async -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return condition()
    }

    @Test func theBootAddressIsBoundEvenWhenThisHostDoesNotHoldIt() async throws {
        // 192.0.2.1 (TEST-NET-1) stands for the virtual IP held by the other master: only
        // bound, never sent to.
        var c = try pxedConfig()
        c.pxed.imagesDirectory = dir + "/images"
        let service = try PXEService(config: c, stateDirectory: dir, events: EventHub(), logger: logger)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let listeners: [HTTPBootServer.Listener] = [.init(address: IPv4Address("127.0.0.1")!, freebind: false),
                                                    .init(address: IPv4Address("192.0.2.1")!, freebind: true)]
        let server = try? await HTTPBootServer(service: service, listeners: listeners, port: 0, group: group)
        #expect(server?.ports.count == 2)
        await server?.close()
        try? await group.shutdownGracefully()
    }

    @Test func atScale_aClientThatPipelinesAThousandRequestsAndNeverReadsHoldsOneFile() async throws {
        try await withServer(limits(send: .seconds(1))) { server, port in
            let big = dir + "/images/debian/big.img"
            // The service's SQLite files are open already; the image file is not.
            let before = Self.descriptors(under: dir)
            let stuck = try RawClient(port: port, receiveBuffer: 4096)
            let request = "GET /images/debian/big.img HTTP/1.1\r\nHost: t\r\n\r\n"
            #expect(stuck.send(String(repeating: request, count: 1000)))
            #expect(await Self.eventually(5) { server.service.counters.value("http_requests") >= 1 })
            // Give a server without backpressure the time to open a file per request.
            var most = 0, mostOverall = 0
            let until = Date().addingTimeInterval(0.5)
            while Date() < until {
                most = max(most, Self.descriptors(under: big))
                mostOverall = max(mostOverall, Self.descriptors(under: dir) - before)
                try await Task.sleep(for: .milliseconds(25))
            }
            #expect(most <= 1, "descriptors open on the image: \(most)")
            #expect(mostOverall <= 1, "descriptors added in the state and images directories: \(mostOverall)")
            #expect(server.service.counters.value("http_requests") <= 2)

            // Others are still served meanwhile.
            let other = try RawClient(port: port)
            #expect(other.send("GET /images/debian/vmlinuz HTTP/1.1\r\nHost: t\r\n\r\n"))
            let response = try #require(other.readResponse())
            #expect(response.status == 200 && response.body == Array("x".utf8))

            // The stuck one makes no progress: the send timeout closes it and frees the file.
            #expect(await Self.eventually(5) { server.service.counters.value("http_timeouts") >= 1 })
            #expect(await Self.eventually(2) { Self.descriptors(under: big) == 0 })
            _ = stuck
        }
    }

    @Test func aClientSendingItsHeadAByteEvery100msIsClosedAfterTheHeadTimeout() async throws {
        try await withServer(limits(head: .milliseconds(500))) { server, port in
            let slow = try RawClient(port: port)
            let start = Date()
            var closedAfter: TimeInterval?
            for byte in "GET /images/debian/vmlinuz HTTP/1.1\r\nHost: t\r\n\r\n".utf8 {
                if !slow.send([byte]) || slow.peerClosed() { closedAfter = Date().timeIntervalSince(start); break }
                try await Task.sleep(for: .milliseconds(100))
            }
            let elapsed = try #require(closedAfter, "the server waited for the whole slow head")
            #expect(elapsed >= 0.4 && elapsed < 3, "closed after \(elapsed) s")
            #expect(slow.received.isEmpty, "no response to a head that came too late")
            #expect(server.service.counters.value("http_timeouts") == 1)
            #expect(server.service.counters.value("http_requests") == 0)
        }
    }

    @Test func aRevisionIsServedUnderItsPercentEncodedNameAndHostKeysOnlyToTheirNode() async throws {
        // A published revision: IMAGES/base/1/{image.json,vmlinuz}.
        let store = ImageStore(directory: dir + "/images")
        let staged = try store.incoming("base")
        try Data("k".utf8).write(to: URL(fileURLWithPath: staged + "/vmlinuz"))
        try store.publish(staged, info: ImageRevisionInfo(name: "base", suite: "bookworm", packages: [], createdBy: "t", how: "build"))
        try await withServer(limits()) { server, port in
            let c = try RawClient(port: port)
            #expect(c.send("GET /images/base%401/vmlinuz HTTP/1.1\r\nHost: t\r\n\r\n") && c.readResponse()?.status == 200, "iPXE writes @ as %40")
            #expect(c.send("GET /images/base%2F..%2Fdebian/vmlinuz HTTP/1.1\r\nHost: t\r\n\r\n") && c.readResponse()?.status == 404)
            #expect(c.send("GET /node/52-54-00-00-00-09/hosts HTTP/1.1\r\nHost: t\r\n\r\n") && c.readResponse()?.status == 200)
            // No such node, and 127.0.0.1 is nobody's address: no key.
            #expect(c.send("GET /node/52-54-00-00-00-09/ssh_host_ed25519_key HTTP/1.1\r\nHost: t\r\n\r\n") && c.readResponse()?.status == 403)
            #expect(!FileManager.default.fileExists(atPath: dir + "/identity/52-54-00-00-00-09"))
        }
    }

    @Test func connectionsOverTheCapsAreClosedAtOnceAndTheOthersServed() async throws {
        try await withServer(limits(max: 3, perClient: 2)) { server, port in
            func served(_ c: RawClient) -> Bool {
                c.send("GET /images/debian/vmlinuz HTTP/1.1\r\nHost: t\r\n\r\n") && c.readResponse()?.status == 200
            }
            func refused(_ c: RawClient) -> Bool {
                _ = c.send("GET /images/debian/vmlinuz HTTP/1.1\r\nHost: t\r\n\r\n")
                return c.readUntilClosed(seconds: 3) && c.received.isEmpty
            }
            let a = try RawClient(port: port), b = try RawClient(port: port)
            #expect(served(a) && served(b))
            #expect(refused(try RawClient(port: port)), "a third from 127.0.0.1: over the per-client cap")
            let c = try RawClient(port: port, from: "127.0.0.2")
            #expect(served(c), "another address still gets in")
            #expect(refused(try RawClient(port: port, from: "127.0.0.3")), "a fourth in all: over the total cap")
            #expect(served(a) && served(b) && served(c), "the admitted ones are still served")
            #expect(server.service.counters.value("http_refused_connections") == 2)

            a.close()
            #expect(await Self.eventually(3) { server.connections.total == 2 })
            #expect(served(try RawClient(port: port)), "a closed connection's place is free again")
        }
    }

    @Test func anIdleKeepAliveConnectionIsClosedAfterTheIdleTimeout() async throws {
        try await withServer(limits(idle: .seconds(1))) { server, port in
            let c = try RawClient(port: port)
            #expect(c.send("GET /images/debian/vmlinuz HTTP/1.1\r\nHost: t\r\n\r\n") && c.readResponse()?.status == 200)
            try await Task.sleep(for: .milliseconds(200))
            #expect(c.send("GET /images/debian/vmlinuz HTTP/1.1\r\nHost: t\r\n\r\n") && c.readResponse()?.status == 200,
                    "kept alive within the idle timeout")
            let start = Date()
            #expect(c.readUntilClosed(seconds: 5))
            let elapsed = Date().timeIntervalSince(start)
            #expect(elapsed >= 0.7 && elapsed < 4, "closed after \(elapsed) s")
            #expect(server.service.counters.value("http_timeouts") == 1)
        }
    }
}

/// A blocking TCP client on plain sockets: it does what HTTP client libraries will not,
/// pipeline without reading and send a head a byte at a time.
final class RawClient {
    private var fd: Int32
    /// What came back so far.
    private(set) var received: [UInt8] = []

    struct Failed: Error, CustomStringConvertible {
        var description: String
    }

    init(port: Int, from source: String = "127.0.0.1", receiveBuffer: Int32? = nil) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failed(description: "socket: errno \(errno)") }
        if var size = receiveBuffer { setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, 4) }
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        func address(_ text: String, _ port: Int) -> sockaddr_in {
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_port = UInt16(port).bigEndian
            inet_pton(AF_INET, text, &a.sin_addr)
            return a
        }
        var src = address(source, 0), dst = address("127.0.0.1", port)
        let len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &src) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        let connected = withUnsafePointer(to: &dst) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, len) } }
        guard bound == 0, connected == 0 else {
            Glibc.close(fd)
            throw Failed(description: "bind/connect from \(source) to port \(port): errno \(errno)")
        }
    }

    deinit { close() }

    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    func send(_ text: String) -> Bool { send(Array(text.utf8)) }

    func send(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { return false }
            offset += n
        }
        return true
    }

    /// Reads what is there within `wait` ms: false once the peer has closed (EOF or reset).
    private func pump(wait: Int32) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, wait) > 0 else { return true }
        var buffer = [UInt8](repeating: 0, count: 65536)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        if n > 0 {
            received += buffer[..<n]
            return true
        }
        return n < 0 && (errno == EAGAIN || errno == EINTR)
    }

    /// Whether the peer has closed, without waiting.
    func peerClosed() -> Bool { !pump(wait: 0) }

    /// Reads until the peer closes: true if it did within `seconds`.
    func readUntilClosed(seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if !pump(wait: 50) { return true }
        }
        return false
    }

    /// One response with a Content-Length body, taken off `received`; nil if none came within 5 s.
    func readResponse() -> (status: Int, body: [UInt8])? {
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline {
            if let end = received.indices.dropLast(3).first(where: { received[$0...].starts(with: [13, 10, 13, 10]) }) {
                let head = String(decoding: received[..<end], as: UTF8.self)
                let lines = head.components(separatedBy: "\r\n")
                let status = lines.first.flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") } ?? 0
                let length = lines.dropFirst().compactMap { line -> Int? in
                    let kv = line.split(separator: ":", maxSplits: 1)
                    return kv.count == 2 && kv[0].lowercased() == "content-length" ? Int(kv[1].trimmingCharacters(in: .whitespaces)) : nil
                }.first ?? 0
                if received.count >= end + 4 + length {
                    let body = Array(received[(end + 4)..<(end + 4 + length)])
                    received.removeFirst(end + 4 + length)
                    return (status, body)
                }
            }
            if !pump(wait: 50) { return nil }
        }
        return nil
    }
}
