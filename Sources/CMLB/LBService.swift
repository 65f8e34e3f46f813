import CMConfig
import CMTypes
import CMWire
import Foundation
import Glibc
import Logging
import Synchronization

/// cm-lbd's state: the event loops, one listener per frontend, one pool per backend, the
/// cm-healthd subscription that takes servers out and back, drains, reloads and the stop.
public actor LBService {
    let limiter: ConnectionLimiter
    let events: EventHub
    let logger: Logger
    let healthdSocket: String
    /// Listening sockets passed by systemd, by the address they are bound to.
    var passedSockets: [IPv4Endpoint: CInt]
    private(set) var config: LbdConfig
    var pools: [String: BackendPool] = [:]
    var listeners: [String: L4Listener] = [:]
    /// The event loops every frontend's connections run on.
    let engine: L4Engine
    var counters: [String: FrontendCounters] = [:]
    /// Each frontend's max_connections, by name, kept across reloads like its counters.
    var limiters: [String: ConnectionLimiter] = [:]
    /// What `cmctl lb drain` drained, applied again to pools made by a reload.
    var drained: Set<String> = []
    /// Nodes cm-healthd reports down for each followed check name.
    var healthDown: [String: Set<String>] = [:]
    var tracking: Task<Void, Never>?
    private var stopping = false

    public init(config: LbdConfig, passedSockets: [CInt], runtimeDirectory: String, events: EventHub, logger: Logger) throws {
        let threads = config.lbd.threads > 0 ? config.lbd.threads : ProcessInfo.processInfo.activeProcessorCount
        limiter = ConnectionLimiter(limit: config.lbd.maxConnections)
        engine = try L4Engine(threads: threads, pin: config.lbd.pinThreads, incomingCPU: config.lbd.incomingCPU, limiter: limiter)
        self.config = config
        self.events = events
        self.logger = logger
        healthdSocket = SuiteDaemon.healthd.socketPath(runtimeDirectory: runtimeDirectory)
        var byAddress: [IPv4Endpoint: CInt] = [:]
        for fd in passedSockets {
            if let endpoint = Self.boundEndpoint(fd) { byAddress[endpoint] = fd }
        }
        self.passedSockets = byAddress
    }

    /// Opens every frontend; throws when one cannot listen.
    public func start() async throws {
        let cpus = engine.loops.compactMap(\.cpu)
        logger.info("cm-lbd: \(engine.loops.count) threads\(cpus.isEmpty ? "" : " on CPUs \(cpus.map(String.init).joined(separator: ", "))"), \(config.frontends.count) frontends")
        if let failed = engine.loops.first(where: { $0.pinError != 0 }) {
            logger.warning("pin_threads: cannot keep threads to their CPUs: \(String(cString: strerror(failed.pinError))); they run unpinned (set pin_threads = false to say so)")
        }
        try await apply(config, initial: true)
        for endpoint in passedSockets.keys.sorted(by: { $0.description < $1.description }) {
            logger.warning("systemd passed a socket for \(endpoint), but no frontend listens there; check lbd.toml against the cm-lbd-frontend@ sockets")
        }
    }

    public func run() async {
        restartTracking()
        while !Task.isCancelled {
            for c in counters.values { c.sample() }
            updateStatusLine()
            try? await Task.sleep(for: .seconds(1))
        }
    }

    public func reload(_ new: LbdConfig) async throws {
        if new.lbd.threads != config.lbd.threads || new.lbd.pinThreads != config.lbd.pinThreads || new.lbd.incomingCPU != config.lbd.incomingCPU {
            logger.notice("lbd.toml: threads, pin_threads and incoming_cpu take effect at the next restart; keeping \(engine.loops.count) threads")
        }
        try await apply(new, initial: false)
    }

    private func apply(_ new: LbdConfig, initial: Bool) async throws {
        var newPools: [String: BackendPool] = [:]
        for b in new.backends {
            let pool = BackendPool(b, carryingOver: pools[b.name])
            for target in drained { _ = pool.setDrained(target: target, true) }
            if let check = b.healthCheck {
                for node in healthDown[check] ?? [] { _ = pool.setHealth(node: node, down: true) }
            }
            newPools[b.name] = pool
        }
        var started: [String: L4Listener] = [:]
        for f in new.frontends {
            let counters = self.counters[f.name] ?? FrontendCounters()
            self.counters[f.name] = counters
            let frontendLimiter = limiters[f.name] ?? ConnectionLimiter(limit: FrontendRuntime.connectionLimit(f))
            limiters[f.name] = frontendLimiter
            // Raised: listeners held back at the old limit accept again.
            frontendLimiter.setLimit(FrontendRuntime.connectionLimit(f))
            // LbdConfig.parse refuses a frontend naming no backend; this is the guard for code that builds configs by hand.
            guard let pool = newPools[f.backend] else { throw LBError("frontend \(f.name): no backend \(f.backend)") }
            let runtime = FrontendRuntime(config: f, pool: pool, counters: counters, limiter: frontendLimiter, logger: logger) { [events] change in
                try? events.publish(topic: Topic.lb, type: MessageType.lbServer, body: change)
            }
            // Same address: the socket stays, new connections take the new settings (mode too).
            if let existing = listeners[f.name], existing.runtime.current.config.listen == f.listen {
                L4Listener.deferAccept(existing.fd, f.mode == .http)
                existing.runtime.replace(runtime)
                started[f.name] = existing
                continue
            }
            if let existing = listeners[f.name] { await close(existing) }
            let fd = passedSockets.removeValue(forKey: f.listen)
            do {
                let socket = try fd.map(L4Listener.adopt) ?? L4Listener.bind(f.listen)
                L4Listener.deferAccept(socket, f.mode == .http)
                let listener = L4Listener(fd: socket, runtime: runtime)
                engine.add(listener)
                started[f.name] = listener
            } catch {
                for (name, l) in started where listeners[name] !== l { await close(l) }
                throw LBError("frontend \(f.name): cannot listen on \(f.listen): \(error)")
            }
            logger.info("frontend \(f.name): \(f.mode.rawValue) on \(f.listen)\(fd != nil ? " (socket from systemd)" : "") → backend \(f.backend)")
        }
        for (name, l) in listeners where started[name] == nil {
            logger.info("frontend \(name) removed: no new connections on \(l.runtime.current.config.listen); open ones finish")
            await close(l)
            counters[name] = nil
            limiters[name] = nil
        }
        listeners = started
        pools = newPools
        config = new
        limiter.setLimit(new.lbd.maxConnections)
        updateStatusLine()
        if !initial { restartTracking() }
    }

    public nonisolated var statusLine: String { statusSnapshot.withLock { $0 } }
    private nonisolated let statusSnapshot = Mutex("starting")

    private func updateStatusLine() {
        let active = counters.values.reduce(0) { $0 + $1.active.load(ordering: .relaxed) }
        let servers = pools.values.flatMap { $0.status().servers }
        let up = servers.filter { $0.state == .up }.count
        let line = "\(listeners.count) frontends, \(active) connections, \(up)/\(servers.count) servers up"
        statusSnapshot.withLock { $0 = line }
    }

    public func status() -> LbStatusReply {
        updateStatusLine()
        let frontends = config.frontends.compactMap { f -> LbFrontendStatus? in
            guard let c = counters[f.name] else { return nil }
            return LbFrontendStatus(name: f.name, listen: f.listen, mode: f.mode.rawValue, backend: f.backend,
                                    active: c.active.load(ordering: .relaxed), total: c.total.load(ordering: .relaxed),
                                    requests: c.requests.load(ordering: .relaxed), requestsPerSecond: c.requestsPerSecond(),
                                    errors: c.errors.load(ordering: .relaxed), retries: c.retries.load(ordering: .relaxed),
                                    maxConnections: f.maxConnections, full: limiters[f.name]?.timesFull ?? 0,
                                    requestTimeouts: c.requestTimeouts.load(ordering: .relaxed))
        }
        return LbStatusReply(frontends: frontends, backends: config.backends.compactMap { pools[$0.name]?.status() })
    }

    public func metrics() -> LbMetricsReply {
        let loops = engine.loops.map { LBMetrics.Loop(index: $0.index, cpu: $0.cpu, connections: $0.load.load(ordering: .relaxed)) }
        return LbMetricsReply(text: LBMetrics.render(status(), loops: loops))
    }

    public func drain(_ request: LbDrainRequest) throws -> LbDrainReply {
        var matched: [String] = []
        for b in config.backends {
            guard let pool = pools[b.name] else { continue }
            matched += pool.setDrained(target: request.target, request.drain).map { "\(b.name)/\($0.address)" }
        }
        guard !matched.isEmpty else {
            throw WireError(.notFound, "no server of any backend is on node or address \"\(request.target)\" (see cmctl lb status)")
        }
        if request.drain { drained.insert(request.target) } else { drained.remove(request.target) }
        logger.notice("\(request.drain ? "drained" : "undrained") \(request.target): \(matched.joined(separator: ", "))")
        for server in matched {
            let parts = server.split(separator: "/", maxSplits: 1)
            if let address = IPv4Endpoint(String(parts[1])) {
                try? events.publish(topic: Topic.lb, type: MessageType.lbServer, body: LbServerChange(
                    backend: String(parts[0]), address: address, node: request.target, state: request.drain ? .drained : .up,
                    reason: request.drain ? "cmctl lb drain" : "cmctl lb undrain", at: .now))
            }
        }
        updateStatusLine()
        return LbDrainReply(servers: matched)
    }

    /// Stops accepting, lets open connections finish for up to `drain_timeout`, then stops.
    public func shutdown() async {
        guard !stopping else { return }
        stopping = true
        tracking?.cancel()
        limiter.stopAccepting()
        for l in listeners.values { await close(l) }
        engine.quiesce()
        let deadline = ContinuousClock.now + config.lbd.drainTimeout
        while limiter.active > 0, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
        }
        if limiter.active > 0 { logger.notice("closing \(limiter.active) connections still open after \(DurationText.format(config.lbd.drainTimeout))") }
        await engine.shutdown()
    }

    /// Stops accepting on a frontend's socket and closes it; its connections go on.
    private func close(_ listener: L4Listener) async {
        await engine.remove(listener)
        Glibc.close(listener.fd)
    }

    // MARK: Following cm-healthd

    /// Follows cm-healthd's transitions for the checks the backends name; reconnects every 2 s
    /// while cm-healthd is away (servers keep their last known state meanwhile).
    private func restartTracking() {
        tracking?.cancel()
        let checks = Set(config.backends.compactMap(\.healthCheck))
        guard !checks.isEmpty else { return }
        let path = healthdSocket
        let logger = self.logger
        // Weak: the task lives in `tracking`, and must not keep the service alive.
        weak let service = self
        tracking = Task {
            await HealthdFollower.follow(socket: path, peer: "cm-lbd", relevant: { checks.contains($0.check) }, logger: logger) { down in
                var byCheck: [String: Set<String>] = [:]
                for id in down { byCheck[id.check, default: []].insert(id.node.rawValue) }
                await service?.healthChanged(byCheck)
            }
        }
    }

    private func healthChanged(_ down: [String: Set<String>]) {
        healthDown = down
        for b in config.backends {
            guard let check = b.healthCheck, let pool = pools[b.name] else { continue }
            let nodes = Set(b.servers.map(\.node))
            for node in nodes {
                let isDown = down[check]?.contains(node) ?? false
                for server in pool.setHealth(node: node, down: isDown) {
                    logger.notice("server \(server.label) of backend \(b.name) \(isDown ? "left the pool: \(check)@\(node) is down" : "is back: \(check)@\(node) is up")",
                                  metadata: ["backend": "\(b.name)", "node": "\(node)"])
                    try? events.publish(topic: Topic.lb, type: MessageType.lbServer, body: LbServerChange(
                        backend: b.name, address: server.address, node: node, state: isDown ? .down : .up,
                        reason: "\(check)@\(node) is \(isDown ? "down" : "up")", at: .now))
                }
            }
        }
        updateStatusLine()
    }

    // MARK: Passed sockets

    /// The IPv4 address a passed listening socket is bound to; nil for others (the control socket).
    static func boundEndpoint(_ fd: CInt) -> IPv4Endpoint? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard rc == 0, storage.ss_family == sa_family_t(AF_INET) else { return nil }
        return withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                IPv4Endpoint(address: IPv4Address(rawValue: UInt32(bigEndian: $0.pointee.sin_addr.s_addr)), port: UInt16(bigEndian: $0.pointee.sin_port))
            }
        }
    }
}

public struct LBError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}
