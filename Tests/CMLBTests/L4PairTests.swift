@testable import CMLB
import CLinux
import CMConfig
import CMTypes
import Glibc
import Logging
import Testing

/// TCP pairs on loops turned by the test: what a client sent before it was accepted, a server
/// that speaks first, a pair handed from one loop to another (`L4Loop.hand`).
@Suite(.serialized) struct L4PairTests {
    static let localhost = IPv4Address(rawValue: 0x7f00_0001)

    func turn(_ loops: [L4Loop], until done: () -> Bool) {
        for _ in 0..<200 {
            for loop in loops { _ = loop.poll(timeoutMs: 5) }
            if done() { return }
        }
    }

    func read(_ fd: Int32, count: Int, turning loops: [L4Loop]) -> [UInt8] {
        var got: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        turn(loops) {
            let n = Glibc.read(fd, &buffer, buffer.count)
            if n > 0 { got += buffer[0..<n] }
            return got.count >= count
        }
        return got
    }

    func write(_ fd: Int32, _ text: String) {
        let bytes = Array(text.utf8)
        #expect(Glibc.write(fd, bytes, bytes.count) == bytes.count)
    }

    /// A TCP frontend on `loop` over `servers`; its listening socket is closed by the caller.
    func frontend(on loop: L4Loop, servers: [IPv4Endpoint], name: String = "db",
                  maxConnections: Int = 0) throws -> (listenFD: Int32, endpoint: IPv4Endpoint, runtime: FrontendRuntime) {
        let listenFD = try L4Listener.bind(IPv4Endpoint(address: Self.localhost, port: 0))
        let pool = BackendPool(BackendConfig(name: name, servers: servers.map { ServerConfig(address: $0) }))
        let endpoint = LBService.boundEndpoint(listenFD)!
        let config = FrontendConfig(name: name, listen: endpoint, mode: .tcp, backend: name, maxConnections: maxConnections)
        let runtime = FrontendRuntime(config: config, pool: pool,
                                      counters: FrontendCounters(), logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }),
                                      onServerChange: { _ in })
        loop.send(.addListener(L4Listener(fd: listenFD, runtime: runtime)))
        _ = loop.poll(timeoutMs: 0)
        return (listenFD, endpoint, runtime)
    }

    func engine(threads: Int) throws -> L4Engine {
        try L4Engine(threads: threads, pin: false, limiter: ConnectionLimiter(limit: 100), start: false)
    }

    /// The balancer's connection to the backend listening on `backendFD`, once there is one.
    func acceptServer(_ backendFD: Int32, turning loops: [L4Loop]) -> Int32 {
        var server: Int32 = -1
        turn(loops) {
            server = accept4(backendFD, nil, nil, Int32(SOCK_NONBLOCK.rawValue))
            return server >= 0
        }
        return server
    }

    @Test func whatTheClientSentBeforeItWasAcceptedReachesTheServerThatAnswersAfterOneRefused() throws {
        let engine = try engine(threads: 1)  // held: its loops refer to it unowned
        let loop = engine.loops[0]
        // A port nobody listens on: bound, then closed.
        let refusedFD = try L4Listener.bind(IPv4Endpoint(address: Self.localhost, port: 0))
        let refused = LBService.boundEndpoint(refusedFD)!
        close(refusedFD)
        let backendFD = try L4Listener.bind(IPv4Endpoint(address: Self.localhost, port: 0))
        defer { close(backendFD) }
        let (listenFD, endpoint, runtime) = try frontend(on: loop, servers: [refused, LBService.boundEndpoint(backendFD)!])
        defer { close(listenFD) }

        // Sent, with the end of input, before the loop accepts: the pair reads it at accept.
        let client = connectClient(to: endpoint)
        defer { close(client) }
        write(client, "hello")
        shutdown(client, Int32(SHUT_WR))
        let server = acceptServer(backendFD, turning: [loop])
        #expect(server >= 0)
        defer { close(server) }
        #expect(runtime.counters.retries.load(ordering: .relaxed) == 1)
        var got: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64)
        var eof = false
        turn([loop]) {
            let n = Glibc.read(server, &buffer, buffer.count)
            if n > 0 { got += buffer[0..<n] }
            eof = n == 0
            return eof
        }
        #expect(got == Array("hello".utf8) && eof)
        write(server, "bye")
        #expect(read(client, count: 3, turning: [loop]) == Array("bye".utf8))
    }

    /// A frontend at its max_connections stops accepting (its clients wait in the listen
    /// queue) while another frontend on the same loop goes on; a close lets the next one in.
    @Test func aFrontendAtItsMaxConnectionsDoesNotStopAnother() throws {
        let engine = try engine(threads: 1)  // held: its loops refer to it unowned
        let loop = engine.loops[0]
        let backendA = try L4Listener.bind(IPv4Endpoint(address: Self.localhost, port: 0))
        defer { close(backendA) }
        let backendB = try L4Listener.bind(IPv4Endpoint(address: Self.localhost, port: 0))
        defer { close(backendB) }
        let full = try frontend(on: loop, servers: [LBService.boundEndpoint(backendA)!], name: "full", maxConnections: 1)
        defer { close(full.listenFD) }
        let other = try frontend(on: loop, servers: [LBService.boundEndpoint(backendB)!], name: "other")
        defer { close(other.listenFD) }

        let a1 = connectClient(to: full.endpoint)
        defer { close(a1) }
        let serverA1 = acceptServer(backendA, turning: [loop])
        #expect(serverA1 >= 0)
        let a2 = connectClient(to: full.endpoint)
        defer { close(a2) }
        turn([loop]) { loop.paused.contains(full.listenFD) }
        #expect(loop.paused.contains(full.listenFD))
        #expect(loop.open.count == 1 && full.runtime.limiter.active == 1 && full.runtime.limiter.timesFull == 1)

        // The other frontend accepts and carries bytes while the first is full.
        let b = connectClient(to: other.endpoint)
        defer { close(b) }
        let serverB = acceptServer(backendB, turning: [loop])
        #expect(serverB >= 0)
        defer { close(serverB) }
        write(b, "hello")
        #expect(read(serverB, count: 5, turning: [loop]) == Array("hello".utf8))
        #expect(loop.open.count == 2 && !loop.paused.contains(other.listenFD))
        #expect(engine.limiter.active == 2)

        // The first frontend's connection ends: the one waiting in the listen queue is taken.
        close(serverA1)
        shutdown(a1, Int32(SHUT_WR))
        let serverA2 = acceptServer(backendA, turning: [loop])
        #expect(serverA2 >= 0)
        defer { close(serverA2) }
        write(a2, "second")
        #expect(read(serverA2, count: 6, turning: [loop]) == Array("second".utf8))
        #expect(full.runtime.limiter.active == 1 && full.runtime.counters.total.load(ordering: .relaxed) == 2)
    }

    @Test func aServerThatSpeaksFirstGetsItsConnectionAtOnce() throws {
        // The bare ACK that ends the handshake is held back only when there is data to carry it;
        // held back here, the server would see nothing for up to 200 ms.
        let engine = try engine(threads: 1)  // held: its loops refer to it unowned
        let loop = engine.loops[0]
        let backendFD = try L4Listener.bind(IPv4Endpoint(address: Self.localhost, port: 0))
        defer { close(backendFD) }
        let (listenFD, endpoint, _) = try frontend(on: loop, servers: [LBService.boundEndpoint(backendFD)!])
        defer { close(listenFD) }
        let client = connectClient(to: endpoint)
        defer { close(client) }
        let started = ContinuousClock.now
        let server = acceptServer(backendFD, turning: [loop])
        #expect(server >= 0)
        #expect(ContinuousClock.now - started < .milliseconds(150))
        defer { close(server) }
        write(server, "220 ready")
        #expect(read(client, count: 9, turning: [loop]) == Array("220 ready".utf8))
    }

    @Test func aMovedPairCarriesBothWaysIncludingWhatArrivedWhileItMoved() throws {
        let engine = try engine(threads: 2)
        let (a, b) = (engine.loops[0], engine.loops[1])
        let backendFD = try L4Listener.bind(IPv4Endpoint(address: Self.localhost, port: 0))
        defer { close(backendFD) }
        // Only loop a accepts.
        let (listenFD, endpoint, _) = try frontend(on: a, servers: [LBService.boundEndpoint(backendFD)!])
        defer { close(listenFD) }
        let client = connectClient(to: endpoint)
        defer { close(client) }
        var server: Int32 = -1
        turn([a]) {
            if server < 0 { server = accept4(backendFD, nil, nil, Int32(SOCK_NONBLOCK.rawValue)) }
            return server >= 0 && (a.open.values.first as? L4Pair)?.canMove == true
        }
        defer { close(server) }
        let pair = try #require(a.open.values.first as? L4Pair)

        write(client, "ping")
        #expect(read(server, count: 4, turning: [a]) == Array("ping".utf8))

        a.hand(pair, to: b)
        #expect(a.open.isEmpty && a.load.load(ordering: .relaxed) == 0 && b.load.load(ordering: .relaxed) == 1)
        // Bytes both ways before b has taken the pair: no epoll set watches it now.
        write(client, "during")
        write(server, "answer")
        #expect(read(server, count: 6, turning: [a, b]) == Array("during".utf8))
        #expect(read(client, count: 6, turning: [a, b]) == Array("answer".utf8))
        #expect(b.open.count == 1 && pair.loop === b)

        // Stamped by a loop whose turn began after b's (its clock is read once per turn): b's
        // timeout sweep takes it as just active, and does not trap on the difference.
        pair.lastClient = b.now + 1_000
        pair.lastServer = b.now + 1_000
        pair.checkTimeouts(now: b.now)
        #expect(!pair.done)

        // Afterwards b alone carries it, and a half-close still passes.
        write(server, "more")
        #expect(read(client, count: 4, turning: [b]) == Array("more".utf8))
        shutdown(client, Int32(SHUT_WR))
        var buffer = [UInt8](repeating: 0, count: 16)
        var eof = false
        turn([b]) {
            eof = Glibc.read(server, &buffer, buffer.count) == 0
            return eof
        }
        #expect(eof)
        close(server)
        server = -1
        turn([b]) { b.open.isEmpty }
        #expect(b.open.isEmpty && b.load.load(ordering: .relaxed) == 0)
    }
}

/// A blocking client connection to `endpoint`, non-blocking once connected (the CMLB tests'
/// clients).
func connectClient(to endpoint: IPv4Endpoint) -> Int32 {
    let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = endpoint.sockaddrIn
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    #expect(connected == 0)
    _ = fcntl(client, F_SETFL, fcntl(client, F_GETFL) | O_NONBLOCK)
    return client
}
