import CMTypes
import CMWire
import Foundation

/// The cluster's nodes as the pages show them, worked out once per answer of cm-pxed and
/// cm-healthd rather than once per request: the rows, each node's checks, the failing ones.
/// AnswerCache keeps it under "rows", dropped on every health and node event.
public struct NodeSummary: Sendable {
    public var rows: [NodeRow]
    public var checksByNode: [String: [CheckStatus]]
    public var nodesByName: [String: NodeInfo]
    /// Every check that is down, in id order.
    public var failing: [CheckStatus]
    public var checkCount: Int
    /// Why cm-pxed or cm-healthd did not answer (nil: it did).
    public var nodesProblem: WireError?
    public var checksProblem: WireError?

    public init(nodes: SuiteClient.Answer<[NodeInfo]>, checks: SuiteClient.Answer<[CheckStatus]>) {
        let nodeList = nodes.value ?? [], checkList = checks.value ?? []
        var byNode: [String: [CheckStatus]] = [:]
        for c in checkList { byNode[c.id.node.rawValue, default: []].append(c) }
        checksByNode = byNode
        nodesByName = Dictionary(nodeList.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        rows = NodeRow.join(nodes: nodeList, checksByNode: byNode)
        failing = checkList.filter { $0.state == .down }
        checkCount = checkList.count
        nodesProblem = Self.problem(nodes)
        checksProblem = Self.problem(checks)
    }

    static func problem<T>(_ answer: SuiteClient.Answer<T>) -> WireError? {
        if case .failure(let e) = answer { return e }
        return nil
    }

    /// The rows to list, or why there are none: without cm-pxed the nodes known from their
    /// checks are still worth listing.
    public var listable: SuiteClient.Answer<[NodeRow]> {
        if let nodesProblem, checksProblem != nil || nodesProblem.code != .notRunning { return .failure(nodesProblem) }
        return .success(rows)
    }
}

extension SuiteClient {
    /// The node summary, shared as the whole lists it is made of are.
    public func summary() async -> NodeSummary {
        await cached("rows") {
            async let nodes = self.nodes(), checks = self.checks()
            return NodeSummary(nodes: await nodes, checks: await checks)
        }
    }
}
