import CMTypes
import CMWire
import Foundation

/// What the console knows it knows from the daemons: each question goes to the daemon that
/// owns the answer over its control socket, and a daemon that is not running is an answer too
/// (the page says so instead of failing).
public struct SuiteClient: Sendable {
    public let runtimeDirectory: String
    /// How the daemons' logs name us ("cm-webd").
    public let peer: String
    /// Lists (every check, one node's checks, every node, the LB's and VIP's status, the
    /// daemons' status lines) go through it when set; metrics and actions never do.
    public let cache: AnswerCache?

    public init(runtimeDirectory: String, peer: String = "cm-webd", cache: AnswerCache? = nil) {
        self.runtimeDirectory = runtimeDirectory
        self.peer = peer
        self.cache = cache
    }

    /// The cache's key prefix of each event topic's daemon.
    public static let cacheKeys: [String: [String]] = ["health": ["healthd.", "rows"], "node": ["pxed.", "rows"], "lb": ["lbd."], "vip": ["vipd."]]

    func cached<T: Sendable>(_ key: String, _ fetch: @escaping @Sendable () async -> T) async -> T {
        guard let cache else { return await fetch() }
        return await cache.get(key, fetch)
    }

    public typealias Answer<T> = Result<T, WireError>

    public func ask<T: Sendable>(_ daemon: SuiteDaemon, _ body: (WireConnection) async throws -> T) async -> Answer<T> {
        do {
            return .success(try await WireClient.withConnection(path: daemon.socketPath(runtimeDirectory: runtimeDirectory), daemon: daemon.name, peer: peer, body))
        } catch let error as WireError {
            return .failure(error)
        } catch {
            return .failure(WireError(.unavailable, "\(daemon.name): \(error)"))
        }
    }

    public func status(_ daemon: SuiteDaemon) async -> Answer<DaemonStatus> {
        await ask(daemon) { try await $0.request(MessageType.status, Empty(), as: DaemonStatus.self) }
    }

    /// Every daemon's `status`, in the suite's order, asked at once.
    public func statuses() async -> [(daemon: SuiteDaemon, answer: Answer<DaemonStatus>)] {
        await cached("status.all") { await self.askStatuses() }.map { ($0.daemon, $0.answer) }
    }

    struct StatusAnswer: Sendable {
        var daemon: SuiteDaemon
        var answer: Answer<DaemonStatus>
    }

    func askStatuses() async -> [StatusAnswer] {
        await withTaskGroup(of: (Int, Answer<DaemonStatus>).self) { group in
            for (i, daemon) in SuiteDaemon.all.enumerated() {
                group.addTask { (i, await status(daemon)) }
            }
            var answers = [Answer<DaemonStatus>?](repeating: nil, count: SuiteDaemon.all.count)
            for await (i, answer) in group { answers[i] = answer }
            return SuiteDaemon.all.enumerated().map { StatusAnswer(daemon: $0.element, answer: answers[$0.offset] ?? .failure(WireError(.internal, "no answer"))) }
        }
    }

    public func vip() async -> Answer<VipStatusReply> {
        await cached("vipd.status") { await self.ask(.vipd) { try await $0.request(MessageType.vipStatus, Empty(), as: VipStatusReply.self) } }
    }

    public func nodes() async -> Answer<[NodeInfo]> {
        await cached("pxed.nodes") { await self.ask(.pxed) { try await $0.requestAll(MessageType.nodeList, NodeListRequest(), as: NodeListReply.self) } }
    }

    public func node(_ name: String) async -> Answer<NodeInfo> {
        await ask(.pxed) { try await $0.request(MessageType.nodeShow, NodeRef(node: name), as: NodeInfo.self) }
    }

    public func pxe() async -> Answer<PxeStatusReply> {
        await ask(.pxed) { try await $0.request(MessageType.pxeStatus, Empty(), as: PxeStatusReply.self) }
    }

    public func checks(node: NodeName? = nil) async -> Answer<[CheckStatus]> {
        let fetch: @Sendable () async -> Answer<[CheckStatus]> = {
            await self.ask(.healthd) { try await $0.requestAll(MessageType.healthList, HealthListRequest(node: node), as: HealthListReply.self) }
        }
        return await cached(node.map { "healthd.node.\($0)" } ?? "healthd.checks", fetch)
    }

    public func history(id: CheckID? = nil, limit: Int) async -> Answer<[HealthTransition]> {
        let fetch: @Sendable () async -> Answer<[HealthTransition]> = {
            await self.ask(.healthd) {
                try await $0.requestAll(MessageType.healthHistory, HealthHistoryRequest(id: id, limit: limit), as: HealthHistoryReply.self, limit: limit)
            }
        }
        return id == nil ? await cached("healthd.history.\(limit)", fetch) : await fetch()
    }

    public func metrics(node: NodeName, since: Date, series: [String]? = nil) async -> Answer<MetricsReply> {
        await ask(.healthd) { try await $0.request(MessageType.metricsQuery, MetricsQuery(node: node, since: since, series: series), as: MetricsReply.self) }
    }

    /// A node's series over the last `seconds`, cached like the lists (a chart's data changes
    /// at each scrape; the pages that show it redraw on the node's health events).
    public func metrics(node: NodeName, lastSeconds seconds: Int, series: [String]? = nil) async -> Answer<MetricsReply> {
        await cached("healthd.metrics.\(node.rawValue).\(seconds).\(series?.joined(separator: ",") ?? "*")") {
            await self.metrics(node: node, since: Date().addingTimeInterval(-Double(seconds)), series: series)
        }
    }

    public func lb() async -> Answer<LbStatusReply> {
        await cached("lbd.status") { await self.ask(.lbd) { try await $0.request(MessageType.lbStatus, Empty(), as: LbStatusReply.self) } }
    }

    public func lbMetrics() async -> Answer<String> {
        await ask(.lbd) { try await $0.request(MessageType.lbMetrics, Empty(), as: LbMetricsReply.self).text }
    }

    public func drain(_ target: String, drain: Bool) async -> Answer<LbDrainReply> {
        await ask(.lbd) { try await $0.request(MessageType.lbDrain, LbDrainRequest(target: target, drain: drain), as: LbDrainReply.self) }
    }

    public func addNode(_ spec: NodeSpec) async -> Answer<NodeInfo> {
        await ask(.pxed) { try await $0.request(MessageType.nodeAdd, spec, as: NodeInfo.self) }
    }

    public func setNode(_ request: NodeSetRequest) async -> Answer<NodeInfo> {
        await ask(.pxed) { try await $0.request(MessageType.nodeSet, request, as: NodeInfo.self) }
    }

    public func removeNode(_ name: String) async -> Answer<NodeInfo> {
        await ask(.pxed) { try await $0.request(MessageType.nodeRemove, NodeRef(node: name), as: NodeInfo.self) }
    }

    /// cm-healthd's newest values of every scraped node (for /metrics), cached like the lists.
    public func latestNodeMetrics() async -> Answer<NodeMetricsLatestReply> {
        await cached("healthd.latest") { await self.ask(.healthd) { try await $0.request(MessageType.metricsLatest, Empty(), as: NodeMetricsLatestReply.self) } }
    }

    /// Reboots a node (cm-pxed asks it over SSH, or its BMC resets it); `by` is the console's user, for cm-pxed's log.
    public func rebootNode(_ name: String, via method: RebootMethod? = nil, by user: String?) async -> Answer<NodeRebootReply> {
        await ask(.pxed) {
            try await $0.request(MessageType.nodeReboot, NodeRebootRequest(node: name, method: method, requestedBy: user.map { "\($0) (cm-webd)" }),
                                 as: NodeRebootReply.self)
        }
    }

    /// cm-pxed's images (its status), cached like the lists.
    public func images() async -> Answer<[String]> {
        await cached("pxed.images") { await self.pxe().map(\.images) }
    }

    public func state() async -> Answer<StateStatusReply> {
        await ask(.replicad) { try await $0.request(MessageType.stateStatus, Empty(), as: StateStatusReply.self) }
    }

    public func volume() async -> Answer<VolumeStatusReply> {
        await ask(.replicad) { try await $0.request(MessageType.volumeStatus, Empty(), as: VolumeStatusReply.self) }
    }

    /// cm-snapd's data sets and their snapshots.
    public func snapshots() async -> Answer<SnapshotListReply> {
        await ask(.snapd) { try await $0.request(MessageType.snapshotList, SnapshotListRequest(), as: SnapshotListReply.self) }
    }

    /// A snapshot of `dataSet` now, logged by cm-snapd with the console's user.
    public func createSnapshot(_ dataSet: String, note: String?, by user: String?) async -> Answer<SnapshotInfo> {
        await ask(.snapd) {
            try await $0.request(MessageType.snapshotCreate, SnapshotCreateRequest(dataSet: dataSet, note: note, requestedBy: user.map { "\($0) (cm-webd)" }),
                                 as: SnapshotInfo.self)
        }
    }
}

extension Result {
    /// The value, or nil when the daemon did not answer.
    public var value: Success? { try? get() }

    /// Why the daemon did not answer, or nil when it did.
    public var failure: Failure? {
        if case .failure(let e) = self { return e }
        return nil
    }
}
