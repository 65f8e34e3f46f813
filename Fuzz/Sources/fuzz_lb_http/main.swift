import CMConfig
@testable import CMLB
import CMTypes
import FuzzSupport
import Glibc
import Logging

/// Whatever a client sends to an HTTP frontend: cm-lbd's session (SwiftNIO's HTTP/1 parser
/// with the frontend's limits, the head rewriting, body framing, the header and body checks
/// and its own error responses) must answer or close, never crash. The session reads from a
/// socketpair on a loop this process turns itself; the pool's only server is drained, so every
/// request that parses ends in cm-lbd's 503 without leaving the process.
let engine = try! L4Engine(threads: 1, pin: false, limiter: ConnectionLimiter(limit: 1_000_000), start: false)
let loop = engine.loops[0]
let pool: BackendPool = {
    let p = BackendPool(BackendConfig(name: "web", servers: [ServerConfig(address: IPv4Endpoint("127.0.0.1:9")!)]))
    _ = p.setDrained(target: "127.0.0.1", true)
    return p
}()
let runtime = FrontendRuntime(
    config: FrontendConfig(name: "web", listen: IPv4Endpoint("127.0.0.1:80")!, mode: .http, backend: "web", maxHeaderBytes: 2048, maxBodyBytes: 4096),
    pool: pool, counters: FrontendCounters(), logger: Logger(label: "fuzz", factory: { _ in SwiftLogNoOpLogHandler() }), onServerChange: { _ in })
nonisolated(unsafe) var sink = [UInt8](repeating: 0, count: 65536)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzLBHTTP(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var fds: [Int32] = [0, 0]
    guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds) == 0 else { return 0 }
    let (client, server) = (fds[0], fds[1])
    var big: Int32 = 1 << 20
    setsockopt(client, SOL_SOCKET, SO_SNDBUF, &big, 4)
    _ = engine.admit(loop, frontend: runtime.limiter)
    _ = engine.assign(from: loop, incomingCPU: -1)
    let session = H1Session(loop: loop, clientFD: server, peer: SocketAddressV4(address: sockaddr_in()), runtime: runtime)
    loop.register(session, fd: server, writable: false)
    loop.open[ObjectIdentifier(session)] = session
    // In two pieces, so that a request split across reads is covered too; then the client's end.
    let cut = size / 2
    _ = write(client, data, cut)
    session.start()
    drain(client)
    _ = write(client, data + cut, size - cut)
    session.handle(fd: server, events: 0x001)  // EPOLLIN
    drain(client)
    shutdown(client, Int32(SHUT_WR))
    session.handle(fd: server, events: 0x2001)  // EPOLLIN | EPOLLRDHUP
    drain(client)
    session.close()
    close(client)
    return 0
}

/// Reads what the session answered, so that its writes never block.
func drain(_ fd: Int32) {
    while read(fd, &sink, sink.count) > 0 {}
}

/// SwiftPM links an executable's entry point as `<module>_main`.
@_cdecl("fuzz_lb_http_main")
public func fuzzLBHTTPMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzzLBHTTP)
}
