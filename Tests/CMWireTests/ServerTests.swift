import CMTypes
import CMWire
import Foundation
import Logging
import NIOCore
import NIOPosix
import Testing

/// Runs a WireServer on a socket in a fresh temp dir for the duration of `body`.
func withTestServer<R: Sendable>(router: WireRouter = WireRouter(), events: EventHub = EventHub(),
                                 policy: PeerPolicy = PeerPolicy(),
                                 maximumConnections: Int = WireServer.defaultMaximumConnections,
                                 helloTimeout: Duration = WireServer.defaultHelloTimeout,
                                 _ body: (String, WireServer) async throws -> R) async throws -> R {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cmwire-\(UUID().uuidString.prefix(8))").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let path = dir + "/test.sock"
    let server = WireServer(daemon: "cm-test", version: "0.0-test", router: router, events: events, policy: policy,
                            maximumConnections: maximumConnections, helloTimeout: helloTimeout,
                            logger: Logger(label: "test")) {
        DaemonStatus(daemon: "cm-test", version: "0.0-test", pid: getpid(), startedAt: Date(), status: "testing")
    }
    let (ready, readyContinuation) = AsyncStream.makeStream(of: Void.self)
    let task = Task { try await server.run(listener: .path(path)) { readyContinuation.yield() } }
    for await _ in ready { break }
    defer { task.cancel() }
    return try await body(path, server)
}

struct Echo: Codable, Sendable, Equatable { var text: String }

func echoRouter() -> WireRouter {
    var router = WireRouter()
    router.on("echo", Echo.self) { request, _ in request }
    router.on("fail", Empty.self) { (_, _) async throws -> Empty in throw WireError(.notFound, "no such thing") }
    return router
}

/// Raw socket client for sending bytes the real client never would.
func rawConnect(_ path: String) throws -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &addr.sun_path) { raw in
        for (i, b) in path.utf8.enumerated() where i < raw.count - 1 { raw[i] = b }
    }
    let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
    guard rc == 0 else { throw WireError(.unavailable, "connect failed") }
    var tv = timeval(tv_sec: 10, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    return fd
}

/// Runs blocking socket calls on a plain thread: blocking the cooperative pool would starve
/// the server under test.
func offPool<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread.detachNewThread { continuation.resume(returning: work()) }
    }
}

/// Reads until one whole frame is in (or EOF, or timeout).
func readFrame(_ fd: Int32) -> [UInt8] {
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        var probe = ByteBuffer(bytes: out)
        if (try? Frame.decode(from: &probe)) != nil { return out }
        let n = read(fd, &buf, buf.count)
        if n <= 0 { return out }
        out += buf[0..<n]
    }
}

/// Reads until EOF (or timeout); returns everything read.
func readAll(_ fd: Int32) -> [UInt8] {
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = read(fd, &buf, buf.count)
        if n <= 0 { break }
        out += buf[0..<n]
    }
    return out
}

@Suite struct ServerTests {
    @Test func helloRequestAndTypedErrors() async throws {
        try await withTestServer(router: echoRouter()) { path, _ in
            try await WireClient.withConnection(path: path, daemon: "cm-test", peer: "test") { conn in
                #expect(conn.helloReply == HelloReply(daemon: "cm-test", version: "0.0-test"))
                let echoed = try await conn.request("echo", Echo(text: "hi"), as: Echo.self)
                #expect(echoed == Echo(text: "hi"))
                let status = try await conn.request(MessageType.status, Empty(), as: DaemonStatus.self)
                #expect(status.status == "testing")
                await #expect(throws: WireError(.notFound, "no such thing")) { try await conn.request("fail", Empty(), as: Empty.self) }
                await #expect(throws: WireError(.unknownType, "cm-test does not know message type \"nope\"")) {
                    try await conn.request("nope", Empty(), as: Empty.self)
                }
                // The connection survives errors.
                #expect(try await conn.request("echo", Echo(text: "again"), as: Echo.self) == Echo(text: "again"))
            }
        }
    }

    @Test func notRunningMessageTellsWhatToDo() async throws {
        await #expect(throws: WireError(.notRunning, "cm-healthd is not running: /nonexistent/healthd.sock: no such socket — start it with systemctl start cm-healthd")) {
            try await WireClient.withConnection(path: "/nonexistent/healthd.sock", daemon: "cm-healthd", peer: "test") { _ in }
        }
    }

    @Test func eventsArriveInOrder() async throws {
        let hub = EventHub()
        try await withTestServer(events: hub) { path, _ in
            try await WireClient.withConnection(path: path, daemon: "cm-test", peer: "test") { conn in
                try await conn.subscribe(topics: ["t"])
                for i in 0..<50 { try hub.publish(topic: "t", type: "tick", body: Echo(text: "\(i)")) }
                try hub.publish(topic: "other", type: "tock", body: Echo(text: "not for us"))
                for i in 0..<50 {
                    let event = try #require(try await conn.nextEvent())
                    #expect(event.header.type == "tick")
                    #expect(try event.body(as: Echo.self) == Echo(text: "\(i)"))
                }
            }
        }
    }

    @Test func requestBeforeHelloIsRefused() async throws {
        try await withTestServer(router: echoRouter()) { path, _ in
            let fd = try rawConnect(path)
            defer { close(fd) }
            var frame = ByteBuffer()
            Frame.encode(Array(#"{"v":1,"kind":"request","id":1,"type":"echo","body":{"text":"x"}}"#.utf8), into: &frame)
            _ = frame.withUnsafeReadableBytes { write(fd, $0.baseAddress, $0.count) }
            var got = ByteBuffer(bytes: await offPool { readFrame(fd) })
            let reply = try ReceivedEnvelope(payload: try #require(try Frame.decode(from: &got)))
            #expect(reply.header.kind == .error)
            #expect(try reply.body(as: WireError.self).code == .helloRequired)
        }
    }

    @Test(arguments: [
        ("oversized", [0x7f, 0xff, 0xff, 0xff] as [UInt8]),
        ("garbage", Array("\u{0}\u{0}\u{0}\u{5}hello".utf8)),
    ])
    func badFrameClosesOnlyThatConnection(name: String, bytes: [UInt8]) async throws {
        try await withTestServer(router: echoRouter()) { path, server in
            try await WireClient.withConnection(path: path, daemon: "cm-test", peer: "good") { good in
                let fd = try rawConnect(path)
                defer { close(fd) }
                _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                // The server answers with an error frame and closes: read() reaches EOF.
                var got = ByteBuffer(bytes: await offPool { readAll(fd) })
                let reply = try ReceivedEnvelope(payload: try #require(try Frame.decode(from: &got)))
                #expect(reply.header.kind == .error, "\(name)")
                #expect(server.counters.badFrames == 1)
                // The other client is unaffected.
                #expect(try await good.request("echo", Echo(text: "still here"), as: Echo.self) == Echo(text: "still here"))
            }
        }
    }

    @Test func peerPolicy() {
        let policy = PeerPolicy(groupName: "no-such-group-cm")
        #expect(policy.permits(PeerCredentials(pid: 1, uid: 0, gid: 0)))
        #expect(policy.permits(PeerCredentials(pid: 1, uid: geteuid(), gid: 12345)))
        #expect(!policy.permits(PeerCredentials(pid: 1, uid: 65534, gid: 65534)) || geteuid() == 65534)
    }

    /// A client that never completes hello (silent, or trickling a frame a byte at a time) is
    /// told why and closed at the deadline; the deadline is absolute, trickling does not extend it.
    @Test(arguments: ["silent", "trickle"])
    func noHelloIsClosedAtTheDeadline(kind: String) async throws {
        try await withTestServer(router: echoRouter(), helloTimeout: .milliseconds(300)) { path, server in
            let fd = try rawConnect(path)
            defer { close(fd) }
            let started = ContinuousClock.now
            let trickle = kind == "trickle"
            let bytes = await offPool { () -> [UInt8] in
                if trickle {
                    // Announce a 64-byte payload, then send it a byte every 100 ms: 6.3 s in all.
                    // MSG_NOSIGNAL: a send after the server's close must not kill the test with SIGPIPE.
                    let header: [UInt8] = [0, 0, 0, 64]
                    _ = header.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                    for _ in 0..<63 {
                        var byte: UInt8 = 0x20
                        if send(fd, &byte, 1, Int32(MSG_NOSIGNAL)) < 0 { break }
                        usleep(100_000)
                    }
                }
                return readAll(fd)
            }
            let elapsed = started.duration(to: .now)
            // Not closed at the deadline: a silent client would wait for SO_RCVTIMEO (10 s) and a
            // trickling one past its 6.3 s of bytes.
            #expect(elapsed >= .milliseconds(250) && elapsed < .seconds(5), "\(kind): closed after \(elapsed)")
            var got = ByteBuffer(bytes: bytes)
            let reply = try ReceivedEnvelope(payload: try #require(try Frame.decode(from: &got), "\(kind): no error frame"))
            #expect(reply.header.kind == .error)
            let error = try reply.body(as: WireError.self)
            #expect(error.code == .helloRequired)
            #expect(error.message.contains("no hello within"))
            #expect(server.counters.helloTimeouts == 1)
        }
    }

    /// After hello no deadline applies: a quiet client and a subscription outlive it many times over.
    @Test func helloInTimeLiftsTheDeadline() async throws {
        let hub = EventHub()
        try await withTestServer(router: echoRouter(), events: hub, helloTimeout: .milliseconds(100)) { path, server in
            try await WireClient.withConnection(path: path, daemon: "cm-test", peer: "quiet") { quiet in
                try await WireClient.withConnection(path: path, daemon: "cm-test", peer: "subscriber") { subscriber in
                    try await subscriber.subscribe(topics: ["t"])
                    try await Task.sleep(for: .milliseconds(600))
                    try hub.publish(topic: "t", type: "tick", body: Echo(text: "late"))
                    let event = try #require(try await subscriber.nextEvent())
                    #expect(try event.body(as: Echo.self) == Echo(text: "late"))
                    #expect(try await quiet.request("echo", Echo(text: "still here"), as: Echo.self) == Echo(text: "still here"))
                    #expect(server.counters.helloTimeouts == 0)
                }
            }
        }
    }

    /// One connection more than the limit is told so and closed; the others are served, and a
    /// place freed by a close is taken again.
    @Test func connectionsBeyondTheLimitAreRefused() async throws {
        try await withTestServer(router: echoRouter(), maximumConnections: 2) { path, server in
            try await WireClient.withConnection(path: path, daemon: "cm-test", peer: "first") { first in
                try await WireClient.withConnection(path: path, daemon: "cm-test", peer: "second") { second in
                    do {
                        try await WireClient.withConnection(path: path, daemon: "cm-test", peer: "third") { _ in }
                        Issue.record("a third connection got in with a limit of 2")
                    } catch let error as WireError {
                        #expect(error.code == .unavailable)
                        #expect(error.message == "cm-test is busy: 2 connections open, the most it serves at once; try again later")
                    }
                    #expect(server.counters.refusedOverLimit == 1)
                    #expect(try await first.request("echo", Echo(text: "1"), as: Echo.self) == Echo(text: "1"))
                    #expect(try await second.request("echo", Echo(text: "2"), as: Echo.self) == Echo(text: "2"))
                }
                // The server frees the place when it sees the close: retry until then, with a deadline.
                let deadline = ContinuousClock.now + .seconds(5)
                var served = false
                while !served, ContinuousClock.now < deadline {
                    do {
                        served = try await WireClient.withConnection(path: path, daemon: "cm-test", peer: "again") { again in
                            try await again.request("echo", Echo(text: "3"), as: Echo.self) == Echo(text: "3")
                        }
                    } catch let error as WireError where error.code == .unavailable {
                        try await Task.sleep(for: .milliseconds(20))
                    }
                }
                #expect(served, "no place under the limit after a connection closed")
                #expect(try await first.request("echo", Echo(text: "1"), as: Echo.self) == Echo(text: "1"))
            }
        }
    }
}
