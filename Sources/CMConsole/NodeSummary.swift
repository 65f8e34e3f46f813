import CMTypes
import CMWire
import Foundation

/// The cluster's nodes as the pages show them, worked out once per answer of cm-pxed (the
/// inventory) and cm-healthd (`health.summary`: counts, each node's tally, the checks that are
/// not up) rather than once per request, and without fetching every check. AnswerCache keeps
/// it under "rows", dropped on every health and node event.
public struct NodeSummary: Sendable {
    public var rows: [NodeRow]
    public var nodesByName: [String: NodeInfo]
    /// The checks that are down, in id order (cm-healthd sends the first 500).
    public var failing: [CheckStatus]
    /// How many are down in all, and how many checks there are.
    public var failingCount: Int
    public var checkCount: Int
    /// Why cm-pxed or cm-healthd did not answer (nil: it did).
    public var nodesProblem: WireError?
    public var checksProblem: WireError?
    /// Tells summaries apart: what is rendered from one is kept under its id.
    public let id = UInt64.random(in: 1 ... .max)
    /// Nodes down, and booting (discovered or fetching their boot files): the overview's tiles.
    public var downCount: Int
    public var bootingCount: Int

    public init(nodes: SuiteClient.Answer<[NodeInfo]>, health: SuiteClient.Answer<HealthSummaryReply>) {
        let nodeList = nodes.value ?? [], h = health.value
        nodesByName = Dictionary(nodeList.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        rows = NodeRow.join(nodes: nodeList, tallies: h?.nodes ?? [])
        downCount = rows.reduce(0) { $0 + ($1.health == .down ? 1 : 0) }
        bootingCount = rows.reduce(0) { $0 + ($1.boot == NodeBootState.booting.rawValue || $1.boot == NodeBootState.discovered.rawValue ? 1 : 0) }
        failing = (h?.notUp ?? []).filter { $0.state == .down }
        failingCount = h?.down ?? 0
        checkCount = h?.total ?? 0
        nodesProblem = nodes.failure
        checksProblem = health.failure
    }

    /// The rows to list, or why there are none: without cm-pxed the nodes known from their
    /// checks are still worth listing.
    public var listable: SuiteClient.Answer<[NodeRow]> {
        if let nodesProblem, checksProblem != nil || nodesProblem.code != .notRunning { return .failure(nodesProblem) }
        return .success(rows)
    }
}

extension SuiteClient {
    public func healthSummary() async -> Answer<HealthSummaryReply> {
        await cached("healthd.summary") {
            await self.ask(.healthd) { try await $0.request(MessageType.healthSummary, HealthSummaryRequest(limit: 500), as: HealthSummaryReply.self) }
        }
    }

    /// The node summary, shared as the answers it is made of are.
    public func summary() async -> NodeSummary {
        await cached("rows") {
            async let nodes = self.nodes(), health = self.healthSummary()
            return NodeSummary(nodes: await nodes, health: await health)
        }
    }
}
