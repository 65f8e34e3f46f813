import CMConfig
import CMStore
import CMTypes
import CMWire
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// cm-healthd's core: has every check instance probed on its own jittered schedule (by the
/// probe loop), feeds the results through the rise/fall state machine, stores and publishes
/// transitions, scrapes node metrics, and answers the control socket's queries. One actor
/// owns all mutable state.
public actor HealthMonitor {
    /// What runs for one check instance.
    struct Instance {
        var id: CheckID
        var check: CheckConfig
        var node: NodeConfig
        var machine: CheckStateMachine
        var since: Date?
        var lastProbe: ProbeSummary?
    }

    struct NodeScrape {
        var node: NodeConfig
        var calculator: NodeMetricsCalculator
        var lastScrape: Date?
        var lastError: String?
        /// The last successful scrape's values (`metrics.latest`).
        var latest: [String: Double] = [:]
        var task: Task<Void, Never>?
    }

    private var cluster: ClusterConfig
    private var config: HealthdConfig
    private var instances: [CheckID: Instance] = [:]
    /// Every instance's id text in order, the order lists are paged in: made when the set of
    /// checks changes (apply), so that a page costs a binary search and its own items rather
    /// than a sort of every check (10,000 checks in 20 pages took 1.5 s that way).
    private var order: [(key: String, id: CheckID)] = []
    /// effectiveCluster's node names, made in apply: what metrics queries are checked against.
    private var knownNodes: Set<NodeName> = []
    private var scrapes: [NodeName: NodeScrape] = [:]
    private var pendingSamples: [(NodeName, Int64, [String: Double])] = []
    private var restoredStates: [CheckID: (HealthState, Date)] = [:]
    private var background: [Task<Void, Never>] = []

    let store: HealthStore
    let events: EventHub
    let logger: Logger
    let probes: ProbeEngine
    let probeLoop: ProbeLoop
    private let summary: Mutex<String>

    public init(cluster: ClusterConfig, config: HealthdConfig, stateDirectory: String, events: EventHub, logger: Logger) async throws {
        self.cluster = cluster
        self.config = config
        self.events = events
        self.logger = logger
        self.store = try HealthStore(path: (stateDirectory as NSString).appendingPathComponent("healthd.sqlite"))
        self.probes = try ProbeEngine()
        self.probeLoop = ProbeLoop(engine: probes, loop: MultiThreadedEventLoopGroup.singleton.next(), limit: config.healthd.maxInFlight)
        self.summary = Mutex("starting")
        for (id, record) in try store.lastStatesWithTime() {
            restoredStates[id] = record
        }
    }

    /// One line for STATUS= and `cmctl status`; readable from any thread.
    public nonisolated var statusLine: String { summary.withLock { $0 } }

    // MARK: Running

    /// Starts every check and scrape; returns when cancelled, after stopping them.
    public func run() async {
        apply(cluster: cluster, config: config)
        background.append(Task { [weak self] in await self?.recordLoop() })
        background.append(Task { [weak self] in await self?.flushLoop() })
        background.append(Task { [weak self] in await self?.maintenanceLoop() })
        // Sleep until cancelled; the probe loop and the scrape tasks do the work.
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(3600))
        }
        stopAll()
    }

    /// Nodes from cm-pxed's inventory (follow_pxed): checked beside cluster.toml's.
    private var inventoryNodes: [NodeConfig] = []

    public var followsPxed: Bool { config.healthd.followPxed }

    /// cluster.toml's nodes plus those of cm-pxed's inventory that clash with none of them
    /// by name, address or MAC address (cluster.toml wins).
    var effectiveCluster: ClusterConfig {
        guard config.healthd.followPxed, !inventoryNodes.isEmpty else { return cluster }
        var c = cluster
        let names = Set(c.nodes.map(\.name)), addresses = Set(c.nodes.map(\.address)), macs = Set(c.nodes.compactMap(\.mac))
        c.nodes += inventoryNodes.filter { n in
            !names.contains(n.name) && !addresses.contains(n.address) && !(n.mac.map { macs.contains($0) } ?? false)
        }
        return c
    }

    /// The inventory changed: checks and scrapes follow.
    public func setInventoryNodes(_ nodes: [NodeConfig]) {
        guard nodes != inventoryNodes else { return }
        inventoryNodes = nodes
        guard config.healthd.followPxed else { return }
        apply(cluster: cluster, config: config)
    }

    public func reload(cluster: ClusterConfig, config: HealthdConfig) {
        if config.healthd.maxInFlight != self.config.healthd.maxInFlight { probeLoop.setLimit(config.healthd.maxInFlight) }
        apply(cluster: cluster, config: config)
    }

    private func stopAll() {
        probeLoop.stop()
        for s in scrapes.values { s.task?.cancel() }
        for t in background { t.cancel() }
        background.removeAll()
        flushSamples()
    }

    public func shutdown() async {
        stopAll()
        probes.shutdown()
    }

    /// Brings the running checks and scrapes in line with a (new) configuration: removed
    /// instances stop, new ones start, changed ones restart with their state kept.
    private func apply(cluster configured: ClusterConfig, config: HealthdConfig) {
        self.config = config
        self.cluster = configured
        let cluster = effectiveCluster
        knownNodes = Set(cluster.nodes.map(\.name))
        var wanted: [CheckID: (CheckConfig, NodeConfig)] = [:]
        for (check, node) in config.instances(of: cluster) {
            wanted[CheckID(check: check.name, node: node.name)] = (check, node)
        }
        let removed = instances.keys.filter { wanted[$0] == nil }
        for id in removed { instances[id] = nil }
        var probing: [CheckID: ProbeLoop.Probe] = [:]
        for (id, (check, node)) in wanted {
            if var existing = instances[id] {
                guard existing.check != check || existing.node != node else { continue }
                existing.check = check
                existing.node = node
                _ = existing.machine.handle(.reconfigure(rise: check.rise, fall: check.fall))
                instances[id] = existing
            } else {
                let restored = restoredStates[id]
                let machine = CheckStateMachine(rise: check.rise, fall: check.fall, initial: restored?.0 ?? .unknown)
                instances[id] = Instance(id: id, check: check, node: node, machine: machine, since: restored?.1, lastProbe: nil)
            }
            probing[id] = ProbeLoop.Probe(spec: ProbeSpec(check: check, node: node), timeout: check.timeout,
                                          schedule: ProbeSchedule(interval: check.interval, jitterPercent: check.jitterPercent))
        }
        if !probing.isEmpty || !removed.isEmpty { probeLoop.update(set: probing, remove: removed) }
        order = instances.keys.map { ($0.description, $0) }.sorted { $0.key < $1.key }
        // Metrics: one scrape loop per node while enabled.
        let metricNodes = config.metrics.enabled ? Dictionary(cluster.nodes.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a }) : [:]
        for (name, scrape) in scrapes where metricNodes[name] != scrape.node || !config.metrics.enabled {
            scrape.task?.cancel()
            scrapes[name] = nil
        }
        for (name, node) in metricNodes where scrapes[name] == nil {
            scrapes[name] = NodeScrape(node: node, calculator: NodeMetricsCalculator(), task: startScraping(node))
        }
        updateSummary()
        logger.info("running \(instances.count) check instances on \(cluster.nodes.count) nodes, metrics \(config.metrics.enabled ? "on" : "off")")
    }

    /// The probe loop's results, a batch at a time: one hop onto the actor per batch.
    private func recordLoop() async {
        for await batch in probeLoop.outcomes {
            for outcome in batch { record(outcome.id, outcome.result) }
        }
    }

    private func record(_ id: CheckID, _ result: ProbeResult) {
        guard var instance = instances[id] else { return }
        let now = Date()
        instance.lastProbe = ProbeSummary(ok: result.ok, message: result.message, latencyMs: result.latency.seconds * 1000, at: now)
        for action in instance.machine.handle(.probe(ok: result.ok, message: result.message)) {
            guard case .transition(let from, let to, let message) = action else { continue }
            instance.since = now
            let transition = HealthTransition(id: id, from: from, to: to, at: now, message: message)
            do {
                try store.record(HealthTransition(id: id, from: from, to: to, at: now, message: message))
            } catch {
                logger.error("cannot store transition of \(id): \(error)", metadata: ["node": "\(id.node)", "check": "\(id.check)"])
            }
            try? events.publish(topic: Topic.health, type: MessageType.healthTransition, body: transition)
            let level: Logger.Level = to == .down ? .warning : .notice
            logger.log(level: level, "\(id) \(from.rawValue) -> \(to.rawValue): \(message)", metadata: ["node": "\(id.node)", "check": "\(id.check)"])
        }
        let changedState = instance.machine.state != instances[id]?.machine.state
        instances[id] = instance
        // Counting all instances per probe would cost O(checks²) a second; only a transition
        // changes the counts.
        if changedState { updateSummary() }
    }

    private func updateSummary() {
        var up = 0, down = 0, unknown = 0
        for i in instances.values {
            switch i.machine.state {
            case .up: up += 1
            case .down: down += 1
            case .unknown: unknown += 1
            }
        }
        let line = "\(instances.count) checks: \(up) up, \(down) down, \(unknown) unknown; \(scrapes.count) nodes scraped"
        summary.withLock { $0 = line }
    }

    // MARK: Metrics

    private func startScraping(_ node: NodeConfig) -> Task<Void, Never> {
        let metrics = config.metrics
        let url = "http://\(node.address):\(metrics.port)\(metrics.path)"
        let interval = metrics.interval
        return Task { [weak self, probes] in
            var rng = SystemRandomNumberGenerator()
            let schedule = ProbeSchedule(interval: interval, jitterPercent: 10)
            var next = ContinuousClock.now + schedule.firstDelay(using: &rng)
            while !Task.isCancelled {
                do { try await Task.sleep(until: next, clock: .continuous) } catch { return }
                let started = ContinuousClock.now
                let response = await probes.http.get(HTTPProbeRequest(url: url, timeout: metrics.timeout, maxBodyBytes: 8 << 20))
                guard !Task.isCancelled, let self else { return }
                await self.scraped(node.name, response)
                next = max(started + schedule.nextDelay(using: &rng), ContinuousClock.now)
            }
        }
    }

    private func scraped(_ name: NodeName, _ response: HTTPProbeResponse) {
        guard var scrape = scrapes[name] else { return }
        let now = Date()
        let nowMs = Int64(now.timeIntervalSince1970 * 1000)
        scrape.lastScrape = now
        if let status = response.status, status == 200 {
            do {
                let samples = try PrometheusTextParser.parse(response.body)
                let values = scrape.calculator.update(samples: samples, atMs: nowMs)
                if !values.isEmpty { pendingSamples.append((name, nowMs, values)) }
                scrape.latest = values
                scrape.lastError = nil
            } catch {
                scrape.lastError = "\(error)"
            }
        } else {
            scrape.lastError = response.error ?? "HTTP \(response.status ?? 0)"
        }
        if let error = scrape.lastError, scrapes[name]?.lastError != error {
            logger.warning("metrics scrape of \(name) failed: \(error)", metadata: ["node": "\(name)"])
        }
        scrapes[name] = scrape
    }

    /// Samples are written in one transaction per second rather than one per scrape.
    private func flushLoop() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            flushSamples()
        }
    }

    private func flushSamples() {
        guard !pendingSamples.isEmpty else { return }
        let batch = pendingSamples
        pendingSamples.removeAll(keepingCapacity: true)
        do {
            try store.insert(batch: batch)
        } catch {
            logger.error("cannot store \(batch.count) metric samples: \(error)")
        }
    }

    private func maintenanceLoop() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(60))
            let m = config.metrics
            let nowMs = Int64(Date().timeIntervalSince1970 * 1000)
            do {
                try store.maintain(nowMs: nowMs, rawRetention: m.rawRetention, minuteRetention: m.minuteRetention, hourRetention: m.hourRetention)
                try store.pruneTransitions(olderThanMs: nowMs - config.healthd.historyRetention.milliseconds)
            } catch {
                logger.error("database maintenance failed: \(error)")
            }
        }
    }

    // MARK: Queries (control socket)

    /// One page of the checks, in the order of their ids' text (the paging key).
    public func list(_ request: HealthListRequest) -> HealthListReply {
        if let node = request.node {
            // One node's checks: a handful, found without the whole order.
            let checks = instances.values.filter { $0.id.node == node && (request.state == nil || $0.machine.state == request.state) }
                .map { ($0.id.description, $0) }.sorted { $0.0 < $1.0 }
                .filter { entry in request.cursor.map { entry.0 > $0 } ?? true }
            let page = checks.prefix(Paging.pageSize)
            return HealthListReply(checks: page.map { status($0.1) }, next: checks.count > page.count ? page.last?.0 : nil)
        }
        var index = 0
        if let cursor = request.cursor {
            // The first id past the cursor.
            var hi = order.count
            while index < hi {
                let mid = (index + hi) / 2
                if order[mid].key <= cursor { index = mid + 1 } else { hi = mid }
            }
        }
        var page: [CheckStatus] = []
        var lastKey = ""
        while index < order.count {
            let (key, id) = order[index]
            index += 1
            guard let instance = instances[id], request.node == nil || id.node == request.node,
                  request.state == nil || instance.machine.state == request.state else { continue }
            // One more match after a full page: there is a next page, from the page's last id.
            if page.count == Paging.pageSize { return HealthListReply(checks: page, next: lastKey) }
            page.append(status(instance))
            lastKey = key
        }
        return HealthListReply(checks: page, next: nil)
    }

    /// Counts, every node's tally and the first checks that are not up, in one answer of a few
    /// hundred kilobytes at most (1,000 nodes), where a list of 10,000 checks is 20 pages.
    public func summary(_ request: HealthSummaryRequest) throws(WireError) -> HealthSummaryReply {
        guard (0...2000).contains(request.limit) else { throw WireError(.invalidArgument, "limit must be 0…2000") }
        var up = 0, down = 0, unknown = 0
        var tallies: [NodeName: NodeHealthTally] = [:]
        var downIDs: [Int] = [], unknownIDs: [Int] = []
        for (index, entry) in order.enumerated() {
            guard let i = instances[entry.id] else { continue }
            let node = entry.id.node
            tallies[node, default: NodeHealthTally(node: node, checks: 0, down: 0, unknown: 0, address: i.node.address)].count(i.machine.state)
            switch i.machine.state {
            case .up: up += 1
            case .down:
                down += 1
                if downIDs.count < request.limit { downIDs.append(index) }
            case .unknown:
                unknown += 1
                if unknownIDs.count < request.limit { unknownIDs.append(index) }
            }
        }
        let notUp = (downIDs + unknownIDs).prefix(request.limit).compactMap { instances[order[$0].id].map(status) }
        return HealthSummaryReply(up: up, down: down, unknown: unknown, nodes: tallies.values.sorted { $0.node < $1.node }, notUp: notUp)
    }

    public func show(_ request: HealthShowRequest) throws -> HealthShowReply {
        guard let instance = instances[request.id] else {
            throw WireError(.notFound, "no check instance \(request.id) (see cmctl health list)")
        }
        let recent = try store.transitions(check: request.id, sinceMs: nil, limit: 10)
        return HealthShowReply(check: status(instance), recent: recent)
    }

    public func history(_ request: HealthHistoryRequest) throws -> HealthHistoryReply {
        guard (1...100_000).contains(request.limit) else { throw WireError(.invalidArgument, "limit must be 1…100000") }
        var before: Int64?
        if let cursor = request.cursor {
            guard let id = Int64(cursor) else { throw WireError(.invalidArgument, "cursor \"\(cursor)\" is not one this daemon gave") }
            before = id
        }
        let since = request.since.map { Int64($0.timeIntervalSince1970 * 1000) }
        let page = try store.transitions(check: request.id, sinceMs: since, beforeID: before,
                                         limit: min(request.limit, HealthHistoryRequest.pageSize))
        return HealthHistoryReply(transitions: page.records, next: page.next.map(String.init))
    }

    /// A node's series from the store. The query runs off the actor (the store is a pool of
    /// SQLite connections, readers in parallel): the actor only checks the node and flushes the
    /// samples waiting for their transaction, so charts do not queue behind probe results.
    public nonisolated func metrics(_ query: MetricsQuery) async throws -> MetricsReply {
        let (scrape, m) = try await metricsContext(query.node)
        let until = query.until ?? Date()
        let series = try store.query(node: query.node, series: query.series,
                                     sinceMs: Int64(query.since.timeIntervalSince1970 * 1000), untilMs: Int64(until.timeIntervalSince1970 * 1000),
                                     rawRetention: m.rawRetention, minuteRetention: m.minuteRetention)
        return MetricsReply(node: query.node, series: series.map(\.wire), lastScrape: scrape?.lastScrape, lastError: scrape?.lastError)
    }

    private func metricsContext(_ node: NodeName) throws -> (NodeScrape?, HealthdConfig.Metrics) {
        guard knownNodes.contains(node) else { throw WireError(.notFound, "no node \(node) in cluster.toml or cm-pxed's inventory") }
        flushSamples()
        return (scrapes[node], config.metrics)
    }

    /// Every scraped node's newest values, by name.
    public func latestMetrics() -> NodeMetricsLatestReply {
        NodeMetricsLatestReply(nodes: scrapes.values.map { NodeLatestMetrics(node: $0.node.name, at: $0.lastScrape, error: $0.lastError, values: $0.latest) }
            .sorted { $0.node.rawValue < $1.node.rawValue })
    }

    private func status(_ i: Instance) -> CheckStatus {
        CheckStatus(id: i.id, type: i.check.kind.name, address: i.node.address, state: i.machine.state, since: i.since,
                    lastProbe: i.lastProbe, consecutiveSuccesses: i.machine.consecutiveSuccesses,
                    consecutiveFailures: i.machine.consecutiveFailures, intervalMs: i.check.interval.milliseconds,
                    timeoutMs: i.check.timeout.milliseconds, rise: i.check.rise, fall: i.check.fall)
    }
}
