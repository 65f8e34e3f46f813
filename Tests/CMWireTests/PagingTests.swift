import CMTypes
import CMWire
import Foundation
import Testing

@Suite struct PagingTests {
    @Test(arguments: [
        // (items, cursor, size) → (page, next)
        (["a", "b", "c", "d"], nil as String?, 2, ["a", "b"], "b" as String?),
        (["a", "b", "c", "d"], "b", 2, ["c", "d"], nil),
        (["a", "b", "c", "d"], "bb", 2, ["c", "d"], nil),  // a cursor whose item went away
        (["a", "b", "c", "d"], "d", 2, [], nil),
        ([], nil, 2, [], nil),
        (["a", "b", "c"], nil, 3, ["a", "b", "c"], nil),
    ])
    func pageAfterCursor(items: [String], cursor: String?, size: Int, page: [String], next: String?) {
        let p = Paging.page(items, key: { $0 }, after: cursor, size: size)
        #expect(p.items == page && p.next == next)
    }

    /// 20,000 nodes and 20,000 checks over a real socket: every one arrives once, in order,
    /// and no page comes near the frame limit; the same list in one answer would not fit.
    @Test func atScale_twentyThousandNodesAndChecksCrossTheSocketInPages() async throws {
        let t = Date(timeIntervalSince1970: 1_800_000_000)
        let nodes = (0..<20_000).map { i in
            NodeInfo(name: String(format: "node%05d", i), mac: MACAddress(bytes: [0x52, 0x54, 0, 0, UInt8(i >> 8), UInt8(i & 0xff)])!,
                     address: IPv4Address(rawValue: 0x0A4D_0000 + UInt32(i)), group: "compute", image: "debian-12", kernelArgs: "console=ttyS0 quiet",
                     arch: "uefi-x86_64", state: .booted, firstSeen: t, lastSeen: t, bootCount: 12, lastImage: "debian-12")
        }
        let checks = nodes.map { n in
            CheckStatus(id: CheckID(check: "http-web", node: NodeName(n.name)), type: "http", address: n.address!, state: .up, since: t,
                        lastProbe: ProbeSummary(ok: true, message: "HTTP 200 in 1.5 ms", latencyMs: 1.5, at: t),
                        consecutiveSuccesses: 9, consecutiveFailures: 0, intervalMs: 1000, timeoutMs: 500, rise: 2, fall: 3)
        }.sorted { $0.id.description < $1.id.description }
        let largest = try JSONEncoder().encode(NodeListReply(nodes: Array(nodes.prefix(Paging.pageSize)), next: "x")).count
        #expect(largest < Frame.defaultMaximumLength / 2, "a page of \(largest) bytes leaves no room")
        #expect(largest * (nodes.count / Paging.pageSize) > Frame.defaultMaximumLength, "one answer would not fit")

        var router = WireRouter()
        router.on(MessageType.nodeList, NodeListRequest.self) { r, _ in
            let page = Paging.page(nodes, key: \.name, after: r.cursor)
            return NodeListReply(nodes: page.items, next: page.next)
        }
        router.on(MessageType.healthList, HealthListRequest.self) { r, _ in
            let page = Paging.page(checks, key: \.id.description, after: r.cursor)
            return HealthListReply(checks: page.items, next: page.next)
        }
        _ = try await withTestServer(router: router) { path, _ in
            try await WireClient.withConnection(path: path, daemon: "cm-test", peer: "test") { conn in
                let gotNodes = try await conn.requestAll(MessageType.nodeList, NodeListRequest(), as: NodeListReply.self)
                #expect(gotNodes.count == nodes.count && zip(gotNodes, nodes).allSatisfy(==))
                let gotChecks = try await conn.requestAll(MessageType.healthList, HealthListRequest(), as: HealthListReply.self)
                #expect(gotChecks.count == checks.count && zip(gotChecks, checks).allSatisfy(==))
                let some = try await conn.requestAll(MessageType.nodeList, NodeListRequest(), as: NodeListReply.self, limit: 1200)
                #expect(some.count == 1200 && zip(some, nodes).allSatisfy(==))
            }
        }
    }

    @Test func aDaemonThatRepeatsACursorIsAnErrorNotALoop() async throws {
        var router = WireRouter()
        router.on(MessageType.nodeList, NodeListRequest.self) { _, _ in NodeListReply(nodes: [], next: "same") }
        _ = try await withTestServer(router: router) { path, _ in
            try await WireClient.withConnection(path: path, daemon: "cm-test", peer: "test") { conn in
                await #expect(throws: WireError.self) { try await conn.requestAll(MessageType.nodeList, NodeListRequest(), as: NodeListReply.self) }
            }
        }
    }
}
