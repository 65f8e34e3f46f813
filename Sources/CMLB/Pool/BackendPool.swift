import CMConfig
import CMTypes
import CMWire
import Synchronization

/// One backend pool shared by the event loops: a `ServerSelector` behind a lock, held only
/// for the few comparisons of a pick or a counter update.
public final class BackendPool: Sendable {
    public let name: String
    private let state: Mutex<(config: BackendConfig, selector: ServerSelector)>

    public init(_ config: BackendConfig, carryingOver old: BackendPool? = nil) {
        name = config.name
        algorithm = config.algorithm
        let selector = old.map { ServerSelector(servers: config.servers, algorithm: config.algorithm, carryingOver: $0.selectorSnapshot) }
            ?? ServerSelector(servers: config.servers, algorithm: config.algorithm)
        state = Mutex((config, selector))
    }

    public var config: BackendConfig { state.withLock { $0.config } }
    public let algorithm: BalanceAlgorithm
    var selectorSnapshot: ServerSelector { state.withLock { $0.selector } }

    /// A server for a new connection, counted as opened; nil when none is usable.
    public func acquire(key: UInt64, excluding: Set<Int> = []) -> (index: Int, server: ServerConfig)? {
        state.withLock { s in
            guard let i = s.selector.pick(key: key, now: .now, excluding: excluding) else { return nil }
            s.selector.opened(i)
            return (i, s.selector.servers[i].config)
        }
    }

    /// The connection to server `index` is over.
    public func release(_ index: Int) {
        state.withLock { s in
            guard index < s.selector.servers.count else { return }
            s.selector.closed(index)
        }
    }

    /// Connecting to server `index` failed: it leaves the pool for fail_backoff (and, with
    /// `release`, the connection counted by `acquire` is over). Returns true
    /// when this took it out (it was not out already), for one log line per episode.
    @discardableResult
    public func connectFailed(_ index: Int, release: Bool = true) -> Bool {
        state.withLock { s in
            guard index < s.selector.servers.count else { return false }
            let now = ContinuousClock.now
            let wasOut = s.selector.servers[index].failedUntil.map { $0 > now } ?? false
            if release { s.selector.closed(index) }
            s.selector.failed(index, now: now, backoff: s.config.failBackoff)
            return !wasOut
        }
    }

    public func connected(_ index: Int) {
        state.withLock { s in
            guard index < s.selector.servers.count else { return }
            s.selector.succeeded(index)
        }
    }

    /// Applies cm-healthd's verdict for the servers on `node`; returns the servers it changed.
    public func setHealth(node: String, down: Bool) -> [ServerConfig] {
        state.withLock { s in
            var changed: [ServerConfig] = []
            for i in s.selector.servers.indices where s.selector.servers[i].config.node == node && s.selector.servers[i].healthDown != down {
                s.selector.setHealthDown(i, down)
                changed.append(s.selector.servers[i].config)
            }
            return changed
        }
    }

    /// Drains or undrains the servers whose node or address is `target`; returns them.
    public func setDrained(target: String, _ drained: Bool) -> [ServerConfig] {
        state.withLock { s in
            var matched: [ServerConfig] = []
            for i in s.selector.servers.indices {
                let c = s.selector.servers[i].config
                guard c.node == target || c.address.description == target || c.address.address.description == target else { continue }
                s.selector.setDrained(i, drained)
                matched.append(c)
            }
            return matched
        }
    }

    public func status() -> LbBackendStatus {
        state.withLock { s in
            let now = ContinuousClock.now
            let servers = s.selector.servers.enumerated().map { i, server -> LbServerStatus in
                let state: LbServerState
                if server.drained {
                    state = .drained
                } else if server.healthDown {
                    state = .down
                } else if let until = server.failedUntil, until > now {
                    state = .failed
                } else if !s.selector.isUsable(i, now: now) {
                    state = .full
                } else {
                    state = .up
                }
                return LbServerStatus(address: server.config.address, node: server.config.node, weight: server.config.weight,
                                      backup: server.config.backup, state: state, active: server.active, total: server.total,
                                      failures: server.failures, maxConnections: server.config.maxConnections)
            }
            return LbBackendStatus(name: s.config.name, algorithm: s.config.algorithm.rawValue, servers: servers)
        }
    }
}

/// Counters of one frontend, updated from every event loop.
public final class FrontendCounters: Sendable {
    let active = Atomic<Int>(0)
    let total = Atomic<Int>(0)
    let requests = Atomic<Int>(0)
    let errors = Atomic<Int>(0)
    let retries = Atomic<Int>(0)
    /// HTTP requests whose head was not complete within http_request_timeout.
    let requestTimeouts = Atomic<Int>(0)
    /// (time, requests) samples for requests per second.
    private let samples = Mutex<[(ContinuousClock.Instant, Int)]>([])

    public init() {}

    func opened() {
        active.add(1, ordering: .relaxed)
        total.add(1, ordering: .relaxed)
    }

    func closed() { active.subtract(1, ordering: .relaxed) }
    func request() { requests.add(1, ordering: .relaxed) }
    func error() { errors.add(1, ordering: .relaxed) }
    func retry() { retries.add(1, ordering: .relaxed) }
    func requestTimeout() { requestTimeouts.add(1, ordering: .relaxed) }

    /// Records the request count; the service calls it every second.
    func sample() {
        let now = ContinuousClock.now
        let count = requests.load(ordering: .relaxed)
        samples.withLock { s in
            s.append((now, count))
            s.removeAll { now - $0.0 > .seconds(10) }
        }
    }

    /// Requests per second over the sampled window (up to the last 10 s).
    func requestsPerSecond() -> Double {
        samples.withLock { s in
            guard let first = s.first, let last = s.last, last.0 - first.0 >= .milliseconds(500) else { return 0 }
            let span = last.0 - first.0
            return Double(last.1 - first.1) / (Double(span.components.seconds) + Double(span.components.attoseconds) / 1e18)
        }
    }
}
