import CMConfig
import CMTypes

/// The servers of one backend pool and the choice of a server for each new connection, as a
/// pure value: what is known about each server goes in (health, drain, failures, connection
/// counts), a server index comes out. `BackendPool` wraps it for the event loops.
public struct ServerSelector: Sendable {
    public struct Server: Sendable {
        public var config: ServerConfig
        /// cm-healthd says its check is down.
        public var healthDown = false
        /// `cmctl lb drain`: no new connections, existing ones finish.
        public var drained = false
        /// A connect failed: out of the pool until then (passive check).
        public var failedUntil: ContinuousClock.Instant?
        public var active = 0
        public var total = 0
        public var failures = 0
        /// Smooth weighted round-robin's running weight.
        var current = 0

        init(config: ServerConfig) { self.config = config }
    }

    public private(set) var servers: [Server]
    public let algorithm: BalanceAlgorithm
    /// Consistent-hash ring: (point, server index), sorted by point.
    private var ring: [(point: UInt64, server: Int)] = []
    private var rotation = 0

    /// Points per unit of weight on the hash ring: enough for an even spread of a few servers.
    static let pointsPerWeight = 64

    public init(servers: [ServerConfig], algorithm: BalanceAlgorithm) {
        self.servers = servers.map(Server.init)
        self.algorithm = algorithm
        if algorithm == .source { buildRing() }
    }

    /// Keeps what is known about servers that stay (matched by address) across a reload.
    public init(servers: [ServerConfig], algorithm: BalanceAlgorithm, carryingOver old: ServerSelector) {
        self.init(servers: servers, algorithm: algorithm)
        for i in self.servers.indices {
            guard let o = old.servers.first(where: { $0.config.address == self.servers[i].config.address }) else { continue }
            self.servers[i].healthDown = o.healthDown
            self.servers[i].drained = o.drained
            self.servers[i].failedUntil = o.failedUntil
            self.servers[i].active = o.active
            self.servers[i].total = o.total
            self.servers[i].failures = o.failures
        }
    }

    private mutating func buildRing() {
        ring = []
        for (i, s) in servers.enumerated() {
            for v in 0..<(s.config.weight * Self.pointsPerWeight) {
                ring.append((Self.hash("\(s.config.address)#\(v)"), i))
            }
        }
        ring.sort { $0.point < $1.point }
    }

    /// Whether server `i` may take a new connection now.
    public func isUsable(_ i: Int, now: ContinuousClock.Instant) -> Bool {
        let s = servers[i]
        if s.healthDown || s.drained || s.config.weight == 0 { return false }
        if let until = s.failedUntil, until > now { return false }
        if s.config.maxConnections > 0, s.active >= s.config.maxConnections { return false }
        return true
    }

    /// The server for a new connection from a client whose address hashes to `key`, skipping
    /// `excluded` (servers already tried for it); regular servers first, backups only when no
    /// regular one is usable. nil: none is usable.
    public mutating func pick(key: UInt64, now: ContinuousClock.Instant, excluding excluded: Set<Int> = []) -> Int? {
        for backupTier in [false, true] {
            // Round-robin, the common case, in one pass without allocating.
            if algorithm == .roundrobin {
                if let i = smoothWeighted(backupTier: backupTier, excluded: excluded, now: now) { return i }
                continue
            }
            let candidates = servers.indices.filter { servers[$0].config.backup == backupTier && !excluded.contains($0) && isUsable($0, now: now) }
            guard !candidates.isEmpty else { continue }
            switch algorithm {
            case .roundrobin, .leastconn:
                return leastConnections(candidates)
            case .source:
                return onRing(key: key, candidates: Set(candidates))
            }
        }
        return nil
    }

    /// nginx's smooth weighted round-robin: weights 5,1,1 give a a b a c a a, not a a a a a b c.
    private mutating func smoothWeighted(backupTier: Bool, excluded: Set<Int>, now: ContinuousClock.Instant) -> Int? {
        var total = 0
        var best: Int?
        for i in servers.indices where servers[i].config.backup == backupTier && (excluded.isEmpty || !excluded.contains(i)) && isUsable(i, now: now) {
            servers[i].current += servers[i].config.weight
            total += servers[i].config.weight
            if best == nil || servers[i].current > servers[best!].current { best = i }
        }
        if let best { servers[best].current -= total }
        return best
    }

    /// Fewest active connections per unit of weight; ties go round in turn.
    private mutating func leastConnections(_ candidates: [Int]) -> Int {
        rotation &+= 1
        let start = rotation % candidates.count
        var best = candidates[start]
        for k in 1..<candidates.count {
            let i = candidates[(start + k) % candidates.count]
            // active_i / weight_i < active_best / weight_best, without division.
            if servers[i].active * servers[best].config.weight < servers[best].active * servers[i].config.weight { best = i }
        }
        return best
    }

    /// The first usable server clockwise from the key's point: a server that leaves takes only
    /// its own keys with it, which move to their next server on the ring.
    private func onRing(key: UInt64, candidates: Set<Int>) -> Int? {
        guard !ring.isEmpty else { return candidates.min() }
        let point = Self.mix(key)
        var lo = 0, hi = ring.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if ring[mid].point < point { lo = mid + 1 } else { hi = mid }
        }
        for k in 0..<ring.count {
            let server = ring[(lo + k) % ring.count].server
            if candidates.contains(server) { return server }
        }
        return nil
    }

    // MARK: What happened to a connection

    public mutating func opened(_ i: Int) {
        servers[i].active += 1
        servers[i].total += 1
    }

    public mutating func closed(_ i: Int) {
        servers[i].active = max(0, servers[i].active - 1)
    }

    /// A connect to server `i` failed: out of the pool for `backoff`.
    public mutating func failed(_ i: Int, now: ContinuousClock.Instant, backoff: Duration) {
        servers[i].failures += 1
        servers[i].failedUntil = now + backoff
    }

    /// A connect succeeded: whatever failure was recorded is over.
    public mutating func succeeded(_ i: Int) {
        servers[i].failedUntil = nil
    }

    public mutating func setHealthDown(_ i: Int, _ down: Bool) { servers[i].healthDown = down }
    public mutating func setDrained(_ i: Int, _ drained: Bool) { servers[i].drained = drained }

    // MARK: Hashing

    /// FNV-1a over the text, then mixed: ring points.
    static func hash(_ text: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in text.utf8 {
            h ^= UInt64(b)
            h = h &* 0x100_0000_01b3
        }
        return mix(h)
    }

    /// splitmix64's finalizer: spreads nearby keys (consecutive client addresses) over the ring.
    static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9e37_79b9_7f4a_7c15
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
