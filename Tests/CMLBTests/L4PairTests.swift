@testable import CMLB
import CLinux
import CMConfig
import CMTypes
import Glibc
import Logging
import Testing

/// A TCP pair handed from one loop to another (`L4Loop.hand`), both loops turned by the test.
@Suite(.serialized) struct L4PairMoveTests {
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

    @Test func aMovedPairCarriesBothWaysIncludingWhatArrivedWhileItMoved() throws {
        let engine = try L4Engine(threads: 2, pin: false, limiter: ConnectionLimiter(limit: 100), start: false)
        let (a, b) = (engine.loops[0], engine.loops[1])
        let backendFD = try L4Listener.bind(IPv4Endpoint(address: Self.localhost, port: 0))
        let listenFD = try L4Listener.bind(IPv4Endpoint(address: Self.localhost, port: 0))
        defer { close(backendFD); close(listenFD) }
        let pool = BackendPool(BackendConfig(name: "db", servers: [ServerConfig(address: LBService.boundEndpoint(backendFD)!)]))
        let frontend = LBService.boundEndpoint(listenFD)!
        let runtime = FrontendRuntime(config: FrontendConfig(name: "db", listen: frontend, mode: .tcp, backend: "db"), pool: pool,
                                      counters: FrontendCounters(), logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }),
                                      onServerChange: { _ in })
        // Only loop a accepts.
        a.send(.addListener(L4Listener(fd: listenFD, runtime: runtime)))
        _ = a.poll(timeoutMs: 0)

        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(client) }
        var address = L4Socket.address(frontend)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        #expect(connected == 0)
        _ = fcntl(client, F_SETFL, fcntl(client, F_GETFL) | O_NONBLOCK)
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
