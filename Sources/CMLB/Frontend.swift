import CMConfig
import CMTypes
import CMWire
import Logging
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
    /// The frontend's `max_connections`, kept across reloads like `counters`: the connections
    /// opened under the runtime before count against the one after.
    let limiter: ConnectionLimiter
    let logger: Logger
    /// When "no server available" was last logged, so that a dead pool under load logs once a second.
    private let lastNoServerLog = Mutex<ContinuousClock.Instant?>(nil)
    let onServerChange: @Sendable (LbServerChange) -> Void

    /// `limiter`: the frontend's from before a reload; nil: a new one for `config.maxConnections`.
    init(config: FrontendConfig, pool: BackendPool, counters: FrontendCounters, limiter: ConnectionLimiter? = nil, logger: Logger,
         onServerChange: @escaping @Sendable (LbServerChange) -> Void) {
        self.config = config
        self.pool = pool
        self.counters = counters
        self.limiter = limiter ?? ConnectionLimiter(limit: Self.connectionLimit(config))
        var logger = logger
        logger[metadataKey: "frontend"] = "\(config.name)"
        self.logger = logger
        self.onServerChange = onServerChange
    }

    /// `max_connections` as a limiter's limit: 0 is none of the frontend's own (the global
    /// limiter still holds).
    static func connectionLimit(_ config: FrontendConfig) -> Int { config.maxConnections > 0 ? config.maxConnections : .max }

    /// The client's address as a hash key (source algorithm).
    static func key(_ address: SocketAddressV4) -> UInt64 { UInt64(UInt32(bigEndian: address.address.sin_addr.s_addr)) }

    /// A connect to `server` failed: out of the pool for fail_backoff, logged once per episode.
    func serverFailed(index: Int, server: ServerConfig, reason: String) {
        if pool.connectFailed(index) {
            logger.warning("server \(server.label) of backend \(pool.name) failed: \(reason); out of the pool for \(DurationText.format(pool.config.failBackoff))",
                           metadata: ["backend": "\(pool.name)", "node": "\(server.node)"])
            onServerChange(LbServerChange(backend: pool.name, address: server.address, node: server.node, state: .failed, reason: reason, at: .now))
        }
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

/// The runtime new connections of a frontend use, swapped on reload; shared by the listener
/// and its child-channel initializer.
final class RuntimeRef: Sendable {
    private let value: Mutex<FrontendRuntime>
    init(_ runtime: FrontendRuntime) { value = Mutex(runtime) }
    var current: FrontendRuntime { value.withLock { $0 } }
    func replace(_ runtime: FrontendRuntime) { value.withLock { $0 = runtime } }
}
