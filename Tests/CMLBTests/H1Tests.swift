@testable import CMLB
import CLinux
import CMConfig
import CMTypes
import CNIOLLHTTP
import Glibc
import Logging
import Testing

/// Collects what the parser hands over.
final class Collector: H1ParserDelegate {
    var heads: [(method: String, target: String, fields: [(String, String)])] = []
    var body: [UInt8] = []
    var ends = 0
    var pauseAtEnd = false

    func headComplete(_ p: H1Parser) -> Int32 {
        let text = { (r: Range<Int>) in String(decoding: p.bytes[r], as: UTF8.self) }
        heads.append((text(p.method), text(p.target), p.fields.map { (text($0.name), text($0.value)) }))
        return 0
    }

    func body(_ p: H1Parser, _ bytes: UnsafeRawPointer, _ count: Int) -> Int32 {
        body += UnsafeRawBufferPointer(start: bytes, count: count)
        return 0
    }

    func messageComplete(_ p: H1Parser) -> Int32 {
        ends += 1
        return pauseAtEnd ? H1Parser.pause : 0
    }
}

@Suite struct H1ParserTests {
    static let request = Array("POST /up?x=1 HTTP/1.1\r\nHost: a\r\nEmpty:\r\nConnection: keep-alive, X-Hop\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\n\r\n".utf8)

    @Test func headAndBodyAreTheSameWhereverTheBytesAreCut() {
        for cut in 0...Self.request.count {
            let c = Collector()
            let p = H1Parser(request: true, limit: 4096, delegate: c)
            Self.request.withUnsafeBytes { all in
                #expect(p.execute(all.baseAddress!, cut) == HPE_OK)
                #expect(p.execute(all.baseAddress! + cut, all.count - cut) == HPE_OK)
            }
            #expect(c.heads.count == 1)
            #expect(c.heads.first?.method == "POST")
            #expect(c.heads.first?.target == "/up?x=1")
            #expect(c.heads.first?.fields.map(\.0) == ["Host", "Empty", "Connection", "Transfer-Encoding"], "cut at \(cut)")
            #expect(c.heads.first?.fields.map(\.1) == ["a", "", "keep-alive, X-Hop", "chunked"], "cut at \(cut)")
            #expect(c.body == Array("helloabc".utf8))
            #expect(c.ends == 1)
        }
    }

    @Test func pauseStopsAfterTheMessageAndSaysWhere() {
        let two = Array("GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        let c = Collector()
        c.pauseAtEnd = true
        let p = H1Parser(request: true, limit: 4096, delegate: c)
        two.withUnsafeBytes { all in
            #expect(p.execute(all.baseAddress!, all.count) == HPE_PAUSED)
            let taken = p.taken(from: all.baseAddress!)
            #expect(taken == 28)
            p.resume()
            #expect(p.execute(all.baseAddress! + taken, all.count - taken) == HPE_PAUSED)
        }
        #expect(c.heads.map(\.target) == ["/a", "/b"])
    }

    @Test func headersPastTheLimitOverflow() {
        let big = Array("GET / HTTP/1.1\r\nX-Big: \(String(repeating: "a", count: 300))\r\n\r\n".utf8)
        // Held: the parser's delegate is unowned, and it is told when the message begins.
        let c = Collector()
        let p = H1Parser(request: true, limit: 200, delegate: c)
        big.withUnsafeBytes { #expect(p.execute($0.baseAddress!, $0.count) != HPE_OK) }
        #expect(p.overflow)
        #expect(c.heads.isEmpty)
    }

    @Test func connectionTokensAreTrimmedAndCaseIsIgnored() {
        let c = Collector()
        let p = H1Parser(request: true, limit: 4096, delegate: c)
        let text = Array("GET / HTTP/1.1\r\nConnection:  Keep-Alive ,x-HOP,, \r\nX-Hop: 1\r\n\r\n".utf8)
        text.withUnsafeBytes { _ = p.execute($0.baseAddress!, $0.count) }
        let value = p.fields[0].value
        let tokens = p.tokens(value).map { String(decoding: p.bytes[$0], as: UTF8.self) }
        #expect(tokens == ["Keep-Alive", "x-HOP"])
        #expect(p.sameToken(p.tokens(value)[1], p.fields[1].name))
        #expect(p.name(p.fields[0], is: "connection"))
    }
}

/// An HTTP frontend on a loop turned by the test, a backend socket the test answers by hand,
/// a client socket: what goes to the server and what comes back, byte for byte.
final class Harness {
    let engine: L4Engine
    let loop: L4Loop
    let backendFD: Int32
    let backend: IPv4Endpoint
    let listenFD: Int32
    let frontend: IPv4Endpoint
    let pool: BackendPool
    let runtime: FrontendRuntime

    init(maxBodyBytes: Int = 1 << 20, httpRequestTimeout: Duration = .seconds(10)) throws {
        engine = try L4Engine(threads: 1, pin: false, limiter: ConnectionLimiter(limit: 100), start: false)
        loop = engine.loops[0]
        backendFD = try L4Listener.bind(IPv4Endpoint(address: IPv4Address(rawValue: 0x7f00_0001), port: 0))
        backend = LBService.boundEndpoint(backendFD)!
        listenFD = try L4Listener.bind(IPv4Endpoint(address: IPv4Address(rawValue: 0x7f00_0001), port: 0))
        frontend = LBService.boundEndpoint(listenFD)!
        pool = BackendPool(BackendConfig(name: "web", servers: [ServerConfig(address: backend)]))
        let config = FrontendConfig(name: "web", listen: frontend, mode: .http, backend: "web", maxHeaderBytes: 2048, maxBodyBytes: maxBodyBytes,
                                    httpRequestTimeout: httpRequestTimeout)
        runtime = FrontendRuntime(config: config, pool: pool, counters: FrontendCounters(),
                                      logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }), onServerChange: { _ in })
        engine.add(L4Listener(fd: listenFD, runtime: runtime))
        _ = loop.poll(timeoutMs: 0)
    }

    deinit {
        Glibc.close(backendFD)
        Glibc.close(listenFD)
    }

    func connectClient() -> Int32 { CMLBTests.connectClient(to: frontend) }

    /// Turns the loop until `done` or about `seconds` have passed.
    func turn(seconds: Int = 2, until done: () -> Bool) {
        for _ in 0..<seconds * 100 {
            _ = loop.poll(timeoutMs: 10)
            if done() { return }
        }
    }

    /// A server connection the frontend opened.
    func acceptServer() -> Int32? {
        var fd: Int32 = -1
        turn {
            fd = accept4(backendFD, nil, nil, Int32(SOCK_NONBLOCK.rawValue))
            return fd >= 0
        }
        return fd >= 0 ? fd : nil
    }

    /// Reads what `fd` has until `complete` says it is all there.
    func receive(_ fd: Int32, until complete: (String) -> Bool) -> String {
        var got: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        turn {
            let n = read(fd, &buffer, buffer.count)
            if n > 0 { got += buffer[0..<n] }
            return complete(String(decoding: got, as: UTF8.self))
        }
        return String(decoding: got, as: UTF8.self)
    }

    func send(_ fd: Int32, _ text: String) {
        let bytes = Array(text.utf8)
        #expect(write(fd, bytes, bytes.count) == bytes.count)
    }
}

func headEnded(_ s: String) -> Bool { s.contains("\r\n\r\n") }

/// Reads what `fd` has into `got`; true at its end (the peer closed).
func readAvailable(_ fd: Int32, into got: inout [UInt8]) -> Bool {
    var buffer = [UInt8](repeating: 0, count: 4096)
    let n = read(fd, &buffer, buffer.count)
    if n > 0 { got += buffer[0..<n] }
    return n == 0
}

@Suite(.serialized) struct H1SessionTests {
    @Test func requestAndResponseAreRewrittenAndTheServerConnectionIsReused() throws {
        let h = try Harness()
        let client = h.connectClient()
        defer { close(client) }
        h.send(client, "GET /a HTTP/1.1\r\nHost: svc\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\nX-Forwarded-For: 192.0.2.1\r\nX-Forwarded-Proto: https\r\nAccept: */*\r\n\r\n")
        let server = try #require(h.acceptServer())
        defer { close(server) }
        let request = h.receive(server, until: headEnded)
        #expect(request == "GET /a HTTP/1.1\r\nHost: svc\r\nAccept: */*\r\nX-Forwarded-For: 192.0.2.1, 127.0.0.1\r\nX-Forwarded-Proto: http\r\n\r\n")

        h.send(server, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\nKeep-Alive: timeout=60\r\nX-Backend: b1\r\n\r\n3;ext\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        let response = h.receive(client) { $0.hasSuffix("0\r\n\r\n") }
        #expect(response == "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Backend: b1\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")

        // The next request goes over the same server connection.
        h.send(client, "HEAD /b HTTP/1.1\r\nHost: svc\r\n\r\n")
        #expect(h.receive(server, until: headEnded).hasPrefix("HEAD /b HTTP/1.1\r\n"))
        h.send(server, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        #expect(h.receive(client, until: headEnded) == "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        #expect(h.pool.status().servers[0].total == 2)
    }

    @Test func pipelinedRequestsAreAnsweredInOrderAndAnOldClientGetsNoChunks() throws {
        let h = try Harness()
        let client = h.connectClient()
        defer { close(client) }
        h.send(client, "POST /one HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nxyzGET /two HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        let server = try #require(h.acceptServer())
        defer { close(server) }
        let first = h.receive(server) { $0.hasSuffix("xyz") }
        // Connection is hop-by-hop; an HTTP/1.0 request without Host gets the frontend's.
        #expect(first == "POST /one HTTP/1.1\r\nContent-Length: 3\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nHost: \(h.frontend)\r\n\r\nxyz")
        #expect(!first.contains("GET /two"))  // the second waits for the first's response
        h.send(server, "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
        // An HTTP/1.0 client cannot take chunks: the body as is, then the connection closes.
        let one = h.receive(client) { $0.hasSuffix("ok") }
        #expect(one == "HTTP/1.1 201 Created\r\nConnection: close\r\n\r\nok")
        var byte: UInt8 = 0
        h.turn { read(client, &byte, 1) == 0 }
        #expect(read(client, &byte, 1) == 0)
    }

    @Test func errorsOfOurOwnSayWhy() throws {
        let h = try Harness(maxBodyBytes: 10)
        let client = h.connectClient()
        defer { close(client) }
        h.send(client, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n")
        let tooBig = h.receive(client) { $0.contains("\n") && $0.hasSuffix("at most 10\n") }
        #expect(tooBig.hasPrefix("HTTP/1.1 413 Payload Too Large\r\n"))
        #expect(tooBig.contains("Connection: close\r\n"))

        let c2 = h.connectClient()
        defer { close(c2) }
        h.send(c2, "GARBAGE\r\n\r\n")
        #expect(h.receive(c2) { $0.hasSuffix("\n") && $0.contains("\r\n\r\n") }.hasPrefix("HTTP/1.1 400 Bad Request\r\n"))

        _ = h.pool.setDrained(target: "127.0.0.1", true)
        let c3 = h.connectClient()
        defer { close(c3) }
        h.send(c3, "GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        // Both answered on the open connection: an error without a request body keeps it.
        let two = h.receive(c3) { $0.components(separatedBy: "503 Service Unavailable\r\n").count == 3 && $0.hasSuffix("available\n") }
        #expect(two.components(separatedBy: "cm-lbd: 503 Service Unavailable: no server of backend web is available\n").count == 3)
    }

    @Test func aServerThatClosesBeforeAnsweringIsReplacedForAGet() throws {
        let h = try Harness()
        let client = h.connectClient()
        defer { close(client) }
        h.send(client, "GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
        let first = try #require(h.acceptServer())
        _ = h.receive(first, until: headEnded)
        h.send(first, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        _ = h.receive(client) { $0.hasSuffix("ok") }
        // The pooled connection dies; the next GET is sent again on a new one, unseen.
        close(first)
        for _ in 0..<5 { _ = h.loop.poll(timeoutMs: 10) }
        h.send(client, "GET /y HTTP/1.1\r\nHost: h\r\n\r\n")
        let second = try #require(h.acceptServer())
        defer { close(second) }
        #expect(h.receive(second, until: headEnded).hasPrefix("GET /y "))
        h.send(second, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nyes")
        #expect(h.receive(client) { $0.hasSuffix("yes") }.hasSuffix("Content-Length: 3\r\n\r\nyes"))
    }

    @Test func anUpgradeAnsweredWith101BecomesATunnel() throws {
        let h = try Harness()
        let client = h.connectClient()
        defer { close(client) }
        h.send(client, "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")
        let server = try #require(h.acceptServer())
        defer { close(server) }
        #expect(h.receive(server, until: headEnded)
            == "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\nConnection: upgrade\r\n\r\n")
        h.send(server, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\nFRAME1")
        #expect(h.receive(client) { $0.hasSuffix("FRAME1") }
            == "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: x\r\nConnection: upgrade\r\n\r\nFRAME1")
        // From now on nothing is parsed: what looks like HTTP is just bytes.
        h.send(client, "garbage GET / HTTP/1.1\r\n\r\n")
        #expect(h.receive(server) { $0.hasSuffix("\r\n\r\n") } == "garbage GET / HTTP/1.1\r\n\r\n")
        // Half-close passes through both ways.
        shutdown(client, Int32(SHUT_WR))
        var byte: UInt8 = 0
        h.turn { read(server, &byte, 1) == 0 }
        #expect(read(server, &byte, 1) == 0)
        h.send(server, "bye")
        shutdown(server, Int32(SHUT_WR))
        #expect(h.receive(client) { $0 == "bye" } == "bye")
        h.turn { read(client, &byte, 1) == 0 }
        #expect(read(client, &byte, 1) == 0)
    }

    @Test func aRefusedUpgradeIsAnsweredAndClosed() throws {
        let h = try Harness()
        let client = h.connectClient()
        defer { close(client) }
        h.send(client, "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        let server = try #require(h.acceptServer())
        defer { close(server) }
        _ = h.receive(server, until: headEnded)
        h.send(server, "HTTP/1.1 426 Upgrade Required\r\nContent-Length: 2\r\n\r\nno")
        #expect(h.receive(client) { $0.hasSuffix("no") } == "HTTP/1.1 426 Upgrade Required\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno")
        var byte: UInt8 = 0
        h.turn { read(client, &byte, 1) == 0 }
        #expect(read(client, &byte, 1) == 0)
    }

    /// A complete request whose client asked to close waits for its answer with only the
    /// server's socket in the loop's epoll set; an answer the client does not read at once
    /// puts the client's socket in for writability, and all of it arrives, then the end.
    @Test func aRequestThatEndsItsConnectionWaitsOutsideTheEpollSet() throws {
        let h = try Harness()
        let watched = { h.loop.handlers.lazy.compactMap { $0 }.count }
        let client = h.connectClient()
        defer { close(client) }
        h.send(client, "GET /big HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        let server = try #require(h.acceptServer())
        defer { close(server) }
        #expect(h.receive(server, until: headEnded).hasPrefix("GET /big HTTP/1.1\r\n"))
        #expect(watched() == 1)  // the server connection only

        let size = 4 << 20  // more than the sockets between cm-lbd and the client hold
        let head = Array("HTTP/1.1 200 OK\r\nContent-Length: \(size)\r\n\r\n".utf8)
        let response = head + [UInt8](repeating: 0x61, count: size)
        var sent = 0
        h.turn(seconds: 10) {
            let n = response[sent...].withUnsafeBytes { write(server, $0.baseAddress, $0.count) }
            if n > 0 { sent += n }
            return watched() == 2
        }
        #expect(watched() == 2)  // a write to the client would block: now it is watched

        var got = 0, ended = false
        var buffer = [UInt8](repeating: 0, count: 65536)
        h.turn(seconds: 20) {
            if sent < response.count {
                let n = response[sent...].withUnsafeBytes { write(server, $0.baseAddress, $0.count) }
                if n > 0 { sent += n }
            }
            let n = read(client, &buffer, buffer.count)
            if n > 0 { got += n }
            if n == 0 { ended = true }
            return ended
        }
        #expect(got == response.count - head.count + "HTTP/1.1 200 OK\r\nContent-Length: \(size)\r\nConnection: close\r\n\r\n".utf8.count)
        #expect(ended)

        // A keep-alive client waits for its next request in the set.
        let c2 = h.connectClient()
        defer { close(c2) }
        h.send(c2, "GET /small HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(h.receive(server, until: headEnded).hasPrefix("GET /small HTTP/1.1\r\n"))
        #expect(watched() == 2)
    }

    /// An HTTP frontend's socket hands a connection over once its first bytes are in; a TCP
    /// frontend's at once (its server may speak first).
    @Test(arguments: [true, false]) func anHTTPListenerAcceptsWhenTheRequestIsIn(http: Bool) throws {
        let listener = try L4Listener.bind(IPv4Endpoint(address: IPv4Address(rawValue: 0x7f00_0001), port: 0))
        defer { close(listener) }
        L4Listener.deferAccept(listener, http)
        let endpoint = try #require(LBService.boundEndpoint(listener))
        let client = connectClient(to: endpoint)
        defer { close(client) }
        usleep(50_000)
        let early = accept4(listener, nil, nil, Int32(SOCK_NONBLOCK.rawValue))
        #expect((early >= 0) == !http)
        if early >= 0 { close(early) }
        guard http else { return }
        #expect(write(client, "GET / HTTP/1.1\r\n\r\n", 18) == 18)
        usleep(50_000)
        let fd = accept4(listener, nil, nil, Int32(SOCK_NONBLOCK.rawValue))
        #expect(fd >= 0)
        var buffer = [UInt8](repeating: 0, count: 64)
        #expect(read(fd, &buffer, 64) == 18)  // the request came with the connection
        close(fd)
    }

    @Test func bigBodiesStreamBothWaysIntact() throws {
        let h = try Harness(maxBodyBytes: 8 << 20)
        let client = h.connectClient()
        defer { close(client) }
        let size = 1 << 20  // sixteen times what a session buffers before it stops reading
        let body = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 12) }
        var buffer = [UInt8](repeating: 0, count: 65536)
        // A write side and a read side moved a step per turn of the loop.
        func move(_ bytes: [UInt8], to fd: Int32, sent: inout Int) {
            guard sent < bytes.count else { return }
            let n = bytes[sent...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n > 0 { sent += n }
        }
        func take(_ fd: Int32, into got: inout [UInt8]) {
            let n = read(fd, &buffer, buffer.count)
            if n > 0 { got += buffer[0..<n] }
        }

        let request = Array("PUT /up HTTP/1.1\r\nHost: h\r\nContent-Length: \(size)\r\n\r\n".utf8) + body
        let forwardedHead = Array("PUT /up HTTP/1.1\r\nHost: h\r\nContent-Length: \(size)\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n\r\n".utf8)
        var sent = 0, server: Int32 = -1, atServer: [UInt8] = []
        h.turn(seconds: 20) {
            move(request, to: client, sent: &sent)
            if server < 0 { server = accept4(h.backendFD, nil, nil, Int32(SOCK_NONBLOCK.rawValue)) }
            if server >= 0 { take(server, into: &atServer) }
            return atServer.count >= forwardedHead.count + size
        }
        defer { close(server) }
        // Compared as a Bool: a failure message with 1 MiB arrays in it would take minutes to print.
        let serverGotAll = atServer == forwardedHead + body
        #expect(serverGotAll, "the server got \(atServer.count) of \(forwardedHead.count + size) bytes")

        let response = Array("HTTP/1.1 200 OK\r\nContent-Length: \(size)\r\n\r\n".utf8) + body
        var back = 0, atClient: [UInt8] = []
        h.turn(seconds: 20) {
            move(response, to: server, sent: &back)
            take(client, into: &atClient)
            return atClient.count >= response.count
        }
        let clientGotAll = atClient == response
        #expect(clientGotAll, "the client got \(atClient.count) of \(response.count) bytes")
    }

    /// A client that sends its request head a byte every 100 ms is never idle for
    /// client_timeout; http_request_timeout (1 s here) answers it 408 and closes. A client
    /// beside it on the same frontend is served meanwhile.
    @Test func aRequestHeadThatTricklesGets408AtTheDeadline() throws {
        let h = try Harness(httpRequestTimeout: .seconds(1))
        let started = ContinuousClock.now
        let slow = h.connectClient()
        defer { close(slow) }
        let head = Array("GET /slow HTTP/1.1\r\nHost: h\r\nUser-Agent: trickle, one byte at a time\r\n\r\n".utf8)
        let fast = h.connectClient()
        defer { close(fast) }
        h.send(fast, "GET /fast HTTP/1.1\r\nHost: h\r\n\r\n")

        var sent = 0, lastSent = started - .seconds(1)
        var slowGot: [UInt8] = [], slowEnded = false, answeredAt: ContinuousClock.Instant?
        var server: Int32 = -1, atServer: [UInt8] = [], fastGot: [UInt8] = [], servedAt: ContinuousClock.Instant?
        defer { if server >= 0 { close(server) } }
        h.turn(seconds: 5) {
            let now = ContinuousClock.now
            if slowGot.isEmpty, sent < head.count, now - lastSent >= .milliseconds(100) {
                // MSG_NOSIGNAL: cm-lbd may have closed by now.
                let n = head[sent...].withUnsafeBytes { Glibc.send(slow, $0.baseAddress, 1, Int32(MSG_NOSIGNAL)) }
                if n == 1 {
                    sent += 1
                    lastSent = now
                }
            }
            if server < 0 { server = accept4(h.backendFD, nil, nil, Int32(SOCK_NONBLOCK.rawValue)) }
            if server >= 0, !headEnded(String(decoding: atServer, as: UTF8.self)) {
                _ = readAvailable(server, into: &atServer)
                if headEnded(String(decoding: atServer, as: UTF8.self)) { h.send(server, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") }
            }
            _ = readAvailable(fast, into: &fastGot)
            if servedAt == nil, String(decoding: fastGot, as: UTF8.self).hasSuffix("ok") { servedAt = now }
            slowEnded = slowEnded || readAvailable(slow, into: &slowGot)
            if answeredAt == nil, !slowGot.isEmpty { answeredAt = now }
            return slowEnded && servedAt != nil
        }
        let answer = String(decoding: slowGot, as: UTF8.self)
        #expect(answer.hasPrefix("HTTP/1.1 408 Request Timeout\r\n"), "got \(answer.debugDescription)")
        #expect(answer.contains("\r\nConnection: close\r\n"))
        #expect(slowEnded)
        #expect(sent < head.count)  // the head was never complete
        let after = try #require(answeredAt) - started
        #expect(after >= .seconds(1) && after < .seconds(2), "answered after \(after)")
        #expect(String(decoding: atServer, as: UTF8.self).hasPrefix("GET /fast HTTP/1.1\r\n"))
        #expect(!String(decoding: atServer, as: UTF8.self).contains("/slow"))
        #expect(try #require(servedAt) < answeredAt!)
        #expect(h.runtime.counters.requestTimeouts.load(ordering: .relaxed) == 1)
        #expect(h.runtime.counters.errors.load(ordering: .relaxed) == 1)
    }

    /// The deadline runs from a request's first byte: the wait between keep-alive requests is
    /// client_timeout's. A client that sends nothing at all is closed at the deadline without
    /// a 408 (a browser's connection opened ahead of its request would take the 408 for the
    /// answer to it).
    @Test func theWaitBetweenRequestsIsNotPartOfTheDeadline() throws {
        let h = try Harness(httpRequestTimeout: .seconds(1))
        let client = h.connectClient()
        defer { close(client) }
        let silent = h.connectClient()
        defer { close(silent) }
        h.send(client, "GET /1 HTTP/1.1\r\nHost: h\r\n\r\n")
        let server = try #require(h.acceptServer())
        defer { close(server) }
        _ = h.receive(server, until: headEnded)
        h.send(server, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n#1")
        #expect(h.receive(client) { $0.hasSuffix("#1") }.hasPrefix("HTTP/1.1 200 OK\r\n"))

        // Idle for longer than the deadline, then a request: served.
        let idleUntil = ContinuousClock.now + .milliseconds(1500)
        var silentGot: [UInt8] = [], silentEnded = false
        h.turn(seconds: 3) {
            silentEnded = silentEnded || readAvailable(silent, into: &silentGot)
            return ContinuousClock.now >= idleUntil
        }
        #expect(silentEnded && silentGot.isEmpty)
        h.send(client, "GET /2 HTTP/1.1\r\nHost: h\r\n\r\n")
        #expect(h.receive(server, until: headEnded).hasPrefix("GET /2 HTTP/1.1\r\n"))
        h.send(server, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n#2")
        #expect(h.receive(client) { $0.hasSuffix("#2") }.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(h.runtime.counters.requestTimeouts.load(ordering: .relaxed) == 1)  // the silent one
        #expect(h.runtime.counters.errors.load(ordering: .relaxed) == 0)
    }
}
