import CMConfig
import CMTypes
import CMWire
import Logging
import NIOCore
import NIOPosix
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What every connection of one frontend shares: its config, its pool, its counters.
/// Replaced as a whole on reload; connections keep the one they started with.
public final class FrontendRuntime: Sendable {
    public let config: FrontendConfig
    public let pool: BackendPool
    public let counters: FrontendCounters
    let logger: Logger
    /// When "no server available" was last logged, so that a dead pool under load logs once a second.
    private let lastNoServerLog = Mutex<ContinuousClock.Instant?>(nil)
    let onServerChange: @Sendable (LbServerChange) -> Void

    init(config: FrontendConfig, pool: BackendPool, counters: FrontendCounters, logger: Logger, onServerChange: @escaping @Sendable (LbServerChange) -> Void) {
        self.config = config
        self.pool = pool
        self.counters = counters
        var logger = logger
        logger[metadataKey: "frontend"] = "\(config.name)"
        self.logger = logger
        self.onServerChange = onServerChange
    }

    /// The client's address as a hash key (source algorithm).
    static func key(_ address: SocketAddress?) -> UInt64 {
        guard case .v4(let a) = address else { return 0 }
        return UInt64(UInt32(bigEndian: a.address.sin_addr.s_addr))
    }

    static func key(_ address: SocketAddressV4) -> UInt64 { UInt64(UInt32(bigEndian: address.address.sin_addr.s_addr)) }

    func connectFailed(index: Int, server: ServerConfig, error: any Error, wasCounted: Bool) {
        serverFailed(index: index, server: server, reason: Self.describe(error, connectTimeout: config.connectTimeout), wasCounted: wasCounted)
    }

    /// A connect to `server` failed: out of the pool for fail_backoff, logged once per episode.
    func serverFailed(index: Int, server: ServerConfig, reason: String, wasCounted: Bool = true) {
        if pool.connectFailed(index, release: wasCounted) {
            logger.warning("server \(server.label) of backend \(pool.name) failed: \(reason); out of the pool for \(DurationText.format(pool.config.failBackoff))",
                           metadata: ["CM_BACKEND": "\(pool.name)", "CM_NODE": "\(server.node)"])
            onServerChange(LbServerChange(backend: pool.name, address: server.address, node: server.node, state: .failed, reason: reason, at: .now))
        }
    }

    /// "connection refused", "no answer within 2s": what an admin reads in the journal.
    static func describe(_ error: any Error, connectTimeout: Duration) -> String {
        if let e = error as? NIOConnectionError, let first = e.connectionErrors.first { return describe(first.error, connectTimeout: connectTimeout) }
        if let e = error as? IOError { return String(cString: strerror(e.errnoCode)).lowercased() }
        if let e = error as? ChannelError {
            switch e {
            case .connectTimeout: return "no answer within \(DurationText.format(connectTimeout))"
            case .eof, .ioOnClosedChannel, .alreadyClosed: return "connection closed"
            default: return "\(e)"
            }
        }
        return "\(error)"
    }

    func noServer(tried: Int) {
        let now = ContinuousClock.now
        let log = lastNoServerLog.withLock { last -> Bool in
            if let l = last, now - l < .seconds(1) { return false }
            last = now
            return true
        }
        if log { logger.error("no server of backend \(pool.name) is available (\(tried) tried); clients are turned away") }
    }
}

/// An HTTP frontend's listening socket on SwiftNIO's event loops, passed by systemd or bound
/// here. (TCP frontends run on `L4Engine`.)
final class FrontendListener: Sendable {
    let name: String
    let channel: Channel
    /// The runtime new connections use; swapped on reload.
    let runtime: RuntimeRef

    private init(name: String, channel: Channel, runtime: RuntimeRef) {
        self.name = name
        self.channel = channel
        self.runtime = runtime
    }

    static func start(_ runtime: FrontendRuntime, group: MultiThreadedEventLoopGroup, descriptor: CInt?, limiter: ConnectionLimiter,
                      pools: HTTPConnectionPools) async throws -> FrontendListener {
        let box = RuntimeRef(runtime)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 4096)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // The address may be a virtual IP that is on this host only while it is master.
            .serverChannelOption(ChannelOptions.Types.SocketOption(level: .init(rawValue: Int32(IPPROTO_IP)), name: .init(rawValue: Int32(IP_FREEBIND))), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(limiter.handler()) }
            }
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                let rt = box.current
                return channel.eventLoop.makeCompletedFuture {
                    let ops = channel.pipeline.syncOperations
                    try ops.addHandler(ActivityTimeout(timeout: rt.config.clientTimeout))
                    try HTTPSession.configure(channel: channel, frontend: rt, pools: pools)
                }
            }
        let channel: Channel
        if let descriptor {
            channel = try await bootstrap.withBoundSocket(descriptor).get()
        } else {
            channel = try await bootstrap.bind(host: runtime.config.listen.address.description, port: Int(runtime.config.listen.port)).get()
        }
        return FrontendListener(name: runtime.config.name, channel: channel, runtime: box)
    }

    func replace(_ runtime: FrontendRuntime) { self.runtime.replace(runtime) }
    var current: FrontendRuntime { runtime.current }

    /// Stops accepting and closes the listening socket without losing a connection: with
    /// autoRead off no accept follows, and the close waits until the connections already
    /// accepted are set up (NIO closes one whose setup completes after its listener closed,
    /// resetting a client whose request is already sent). Connections still in the kernel's
    /// queue stay there for the next process when the socket came from systemd.
    func close(limiter: ConnectionLimiter) async {
        try? await channel.setOption(.autoRead, value: false).get()
        await limiter.waitUntilAcceptedAreSetUp()
        try? await channel.close()
    }
}

/// The runtime new connections of a frontend use, swapped on reload; shared by the listener
/// and its child-channel initializer.
final class RuntimeRef: Sendable {
    private let value: Mutex<FrontendRuntime>
    init(_ runtime: FrontendRuntime) { value = Mutex(runtime) }
    var current: FrontendRuntime { value.withLock { $0 } }
    func replace(_ runtime: FrontendRuntime) { value.withLock { $0 = runtime } }
}
