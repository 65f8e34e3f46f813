import CMConfig
@testable import CMLB
import CMTypes
import FuzzSupport
import Logging
import NIOCore
import NIOEmbedded
import NIOPosix

/// Whatever a client sends to an HTTP frontend: cm-lbd's pipeline (NIOHTTP1's decoder with
/// the frontend's limits, the quiesce gate, the session's header and body checks and its own
/// error responses) must answer or close, never crash. The pool's only server is drained, so
/// every request that parses ends in cm-lbd's 503 without leaving the process.
let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
let pools = HTTPConnectionPools(group: group)
let pool: BackendPool = {
    let p = BackendPool(BackendConfig(name: "web", servers: [ServerConfig(address: IPv4Endpoint("127.0.0.1:9")!)]))
    _ = p.setDrained(target: "127.0.0.1", true)
    return p
}()
let runtime = FrontendRuntime(
    config: FrontendConfig(name: "web", listen: IPv4Endpoint("127.0.0.1:80")!, mode: .http, backend: "web", maxHeaderBytes: 2048, maxBodyBytes: 4096),
    pool: pool, counters: FrontendCounters(), logger: Logger(label: "fuzz", factory: { _ in SwiftLogNoOpLogHandler() }), onServerChange: { _ in })

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzLBHTTP(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let channel = EmbeddedChannel()
    do {
        try HTTPSession.configure(channel: channel, frontend: runtime, pools: pools)
        try channel.connect(to: SocketAddress(ipAddress: "10.0.0.9", port: 40000)).wait()
        // In two pieces, so that a request split across reads is covered too.
        let bytes = UnsafeBufferPointer(start: data, count: size)
        let cut = size / 2
        _ = try? channel.writeInbound(ByteBuffer(bytes: bytes[..<cut]))
        _ = try? channel.writeInbound(ByteBuffer(bytes: bytes[cut...]))
        while let _ = try? channel.readOutbound(as: ByteBuffer.self) {}
    } catch {}
    _ = try? channel.finish()
    // An EmbeddedEventLoop runs queued work only when told to; what is left holds the channel.
    channel.embeddedEventLoop.run()
    try? channel.embeddedEventLoop.syncShutdownGracefully()
    return 0
}

/// SwiftPM links an executable's entry point as `<module>_main`.
@_cdecl("fuzz_lb_http_main")
public func fuzzLBHTTPMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzzLBHTTP)
}
