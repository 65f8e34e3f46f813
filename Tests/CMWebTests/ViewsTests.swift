import CMTypes
@testable import CMConsole
@testable import CMWeb
import CMWire
import Foundation
import Synchronization
import Testing

@Suite struct ViewsTests {
    static func check(_ check: String, _ node: String, _ state: HealthState) -> CheckStatus {
        CheckStatus(id: CheckID(check: check, node: NodeName(node)), type: "tcp", address: IPv4Address("10.0.0.1")!, state: state, since: nil,
                    lastProbe: nil, consecutiveSuccesses: 0, consecutiveFailures: 0, intervalMs: 1000, timeoutMs: 500, rise: 2, fall: 3)
    }

    static func node(_ name: String, _ last: UInt8) -> NodeInfo {
        NodeInfo(name: name, mac: MACAddress("52:54:00:00:00:\(String(format: "%02x", last))")!, address: IPv4Address("10.0.0.\(last)"), group: "compute")
    }

    @Test func escapesWhatComesFromOutside() {
        var h = HTML()
        h.text("<script>alert('x')</script> & \"q\"")
        #expect(h.text == "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;")
        let page = Views.checks(.success([Self.check("<img src=x onerror=alert(1)>", "n1", .down)]), state: nil, now: Date())
        #expect(!page.text.contains("<img") && page.text.contains("&lt;img src=x onerror=alert(1)&gt;"))
        // Multi-byte text passes whole, next to escaped characters; plain text is returned as it is.
        #expect(HTML.escape("nœud «<b>» 日本 ✓&") == "nœud «&lt;b&gt;» 日本 ✓&amp;")
        #expect(HTML.escape("node001") == "node001" && HTML.escape("") == "")
    }

    @Test func joinTakesTheWorstCheck() {
        let rows = NodeRow.join(nodes: [Self.node("n1", 1), Self.node("n2", 2), Self.node("n3", 3)],
                                checks: [Self.check("web", "n1", .up), Self.check("ssh", "n1", .down), Self.check("web", "n2", .unknown),
                                         Self.check("web", "outside", .up)])
        #expect(rows.map(\.name) == ["n1", "n2", "n3", "outside"])
        #expect(rows.map(\.health) == [.down, .unknown, nil, .up])
        #expect(rows[0].checksDown == 1 && rows[0].checks == 2)
    }

    @Test func nodeQueryFiltersSortsAndPages() {
        let rows = (1...250).map { i in
            NodeRow(name: String(format: "node%03d", i), address: "10.0.\(i / 256).\(i % 256)", mac: "", group: i % 2 == 0 ? "even" : "odd", image: "",
                    boot: "booted", lastSeen: nil, health: i % 10 == 0 ? .down : .up, checksDown: 0, checks: 1)
        }
        var q = NodeQuery(query: ["health": "down"])
        #expect(q.apply(rows).matched == 25)
        q = NodeQuery(query: ["q": "even", "sort": "-name"])
        let even = q.apply(rows)
        #expect(even.matched == 125 && even.rows.first?.name == "node250" && even.rows.count == 125)
        q = NodeQuery(query: ["sort": "health", "page": "2"])
        let page2 = q.apply(rows)
        #expect(page2.matched == 250 && page2.rows.count == 50 && page2.rows.allSatisfy { $0.health == .up })
        q = NodeQuery(query: ["sort": "address"])
        #expect(q.apply(rows).rows.prefix(3).map(\.name) == ["node001", "node002", "node003"], "addresses sort as numbers, not text")
        #expect(NodeQuery(query: ["page": "-5", "sort": "bogus"]).page == 1)
    }

    @Test func loginRedirectsStayOnThisSite() {
        #expect(Form.safeNext("/nodes?q=a") == "/nodes?q=a")
        for bad in ["//evil.example/", "https://evil.example/", "/\\evil.example", "nodes", "/a b", nil] {
            #expect(Form.safeNext(bad) == "/")
        }
    }

    @Test func formsDecode() {
        #expect(Form.parse("user=ad%20min&password=a+b%26c&next=%2Fnodes&user=second") == ["user": "ad min", "password": "a b&c", "next": "/nodes"])
        #expect(Form.parse("bad=%zz&ok=1") == ["ok": "1"])
    }

    @Test func metricsCoverEveryDaemon() {
        let text = SuiteMetrics.render(.init(statuses: [(SuiteDaemon.healthd, .success(DaemonStatus(daemon: "cm-healthd", version: "0", pid: 1, startedAt: Date(), status: "ok"))),
                                                        (SuiteDaemon.lbd, .failure(WireError(.notRunning, "no")))],
                                             checks: .success([Self.check("web", "n1", .down), Self.check("ssh", "n1", .unknown)]),
                                             vip: .failure(WireError(.notRunning, "no")), pxe: .failure(WireError(.notRunning, "no")),
                                             state: .failure(WireError(.notRunning, "no")), lb: .success("# TYPE lb_x gauge\nlb_x 1")))
        #expect(text.contains("clustermaker_daemon_up{daemon=\"cm-healthd\"} 1\nclustermaker_daemon_up{daemon=\"cm-lbd\"} 0\n"))
        #expect(text.contains("clustermaker_check_up{check=\"web\",node=\"n1\",type=\"tcp\"} 0\n"))
        #expect(!text.contains("check=\"ssh\""))
        #expect(text.contains("clustermaker_checks{state=\"unknown\"} 1\n"))
        #expect(text.hasSuffix("lb_x 1\n"))
    }

    @Test func metricsCarryTheNodesScrapedValues() throws {
        let at = Date(timeIntervalSince1970: 1_800_000_000)
        let nodes = NodeMetricsLatestReply(nodes: [
            NodeLatestMetrics(node: "n1", at: at, error: nil, values: ["cpu_percent": 12.5, "mem_percent": 40, "load1": 0.25]),
            NodeLatestMetrics(node: "n2", at: at, error: "HTTP 503", values: [:]),
            NodeLatestMetrics(node: "n3", at: nil, error: nil, values: [:]),
        ])
        let text = SuiteMetrics.render(.init(statuses: [], checks: .success([]), vip: .failure(WireError(.notRunning, "no")),
                                             pxe: .failure(WireError(.notRunning, "no")), state: .failure(WireError(.notRunning, "no")),
                                             lb: .success(""), nodes: .success(nodes)))
        #expect(text.contains("# TYPE clustermaker_node_cpu_percent gauge\nclustermaker_node_cpu_percent{node=\"n1\"} 12.5\n"))
        #expect(text.contains("clustermaker_node_memory_used_percent{node=\"n1\"} 40\n") && text.contains("clustermaker_node_load1{node=\"n1\"} 0.25\n"))
        #expect(text.contains("clustermaker_node_scrape_up{node=\"n1\"} 1\nclustermaker_node_scrape_up{node=\"n2\"} 0\nclustermaker_node_scrape_up{node=\"n3\"} 0\n"))
        #expect(!text.contains("clustermaker_node_cpu_percent{node=\"n2\"}") && !text.contains("network_receive"), "no value, no sample, no empty family")
        // What Prometheus would read back.
        let samples = try PrometheusTextParser.parse(Array(text.utf8))
        #expect(samples.first { $0.name == "clustermaker_node_scrape_timestamp_seconds" }?.value == 1_800_000_000)
    }
}

@Suite struct AnswerCacheTests {
    /// Keys made from requests (a node name, a chart's series) cannot grow the cache forever.
    @Test func boundedByItsCapacity() async {
        let cache = AnswerCache(maxAge: .seconds(60), capacity: 100)
        for i in 0..<1000 { _ = await cache.get("healthd.node.n\(i)") { i } }
        #expect(cache.count <= 100)
        #expect(await cache.get("healthd.node.n999") { -1 } == 999, "the newest is kept")
    }

    @Test func sharesOneFetchAndForgetsOnInvalidate() async {
        let cache = AnswerCache(maxAge: .seconds(60))
        let fetches = Atomic<Int>(0)
        let fetch: @Sendable () async -> Int = {
            try? await Task.sleep(for: .milliseconds(50))
            return fetches.add(1, ordering: .relaxed).newValue
        }
        let values = await withTaskGroup(of: Int.self) { group in
            for _ in 0..<32 { group.addTask { await cache.get("healthd.checks", fetch) } }
            return await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(values == Array(repeating: 1, count: 32), "thirty-two callers, one fetch")
        cache.invalidate(prefix: "pxed.")
        #expect(await cache.get("healthd.checks", fetch) == 1, "another daemon's event leaves it")
        cache.invalidate(prefix: "healthd.")
        #expect(await cache.get("healthd.checks", fetch) == 2)
    }

    @Test func answersExpire() async throws {
        let cache = AnswerCache(maxAge: .milliseconds(20), maxStale: .milliseconds(20))
        let fetches = Atomic<Int>(0)
        let fetch: @Sendable () async -> Int = { fetches.add(1, ordering: .relaxed).newValue }
        #expect(await cache.get("k", fetch) == 1)
        try await Task.sleep(for: .milliseconds(40))
        #expect(await cache.get("k", fetch) == 2)
    }
}

@Suite struct AnswerCacheStaleTests {
    /// No time window: the second fetch is held until the test lets it go, so an answer that
    /// came while it was held came from the cache (one that waited for the fetch would get 2,
    /// after the 10 s escape).
    @Test func aStaleAnswerServesWhileTheNextIsFetched() async throws {
        let cache = AnswerCache(maxAge: .milliseconds(20), maxStale: .seconds(60))
        let fetches = Atomic<Int>(0), released = Atomic<Bool>(false)
        let held: @Sendable () async -> Int = {
            if fetches.load(ordering: .relaxed) > 0 {
                let escape = ContinuousClock.now + .seconds(10)
                while !released.load(ordering: .relaxed) && ContinuousClock.now < escape {
                    try? await Task.sleep(for: .milliseconds(5))
                }
            }
            return fetches.add(1, ordering: .relaxed).newValue
        }
        #expect(await cache.get("k", held) == 1, "nothing yet: waits")
        try await Task.sleep(for: .milliseconds(40))
        #expect(await cache.get("k", held) == 1, "old answer at once, while the next fetch is held")
        #expect(fetches.load(ordering: .relaxed) == 1, "the next fetch is still held")
        released.store(true, ordering: .relaxed)
        var answer = 1
        let deadline = ContinuousClock.now + .seconds(10)
        while answer == 1 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
            answer = await cache.get("k", held)
        }
        #expect(answer >= 2, "the background fetch replaced it")
    }

    @Test func afterAnInvalidationOnlyANewerFetchServes() async throws {
        let cache = AnswerCache(maxAge: .seconds(60), maxStale: .seconds(60))
        let fetches = Atomic<Int>(0)
        let fetch: @Sendable () async -> Int = { fetches.add(1, ordering: .relaxed).newValue }
        #expect(await cache.get("healthd.checks", fetch) == 1)
        cache.invalidate(prefix: "healthd.")
        #expect(await cache.get("healthd.checks", fetch) == 2, "waits for a fetch begun after the event")
        #expect(await cache.get("healthd.checks", fetch) == 2)
    }
}

@Suite struct LogTextTests {
    @Test func controlCharactersCannotForgeALogLine() {
        #expect(WebApp.printable("admin\ncm-webd: notice: root logged in") == "admin\\u{a}cm-webd: notice: root logged in")
        #expect(WebApp.printable("node001") == "node001")
    }
}

@Suite struct OriginTests {
    @Test(arguments: [
        ("https://10.0.0.1:9443", "10.0.0.1:9443", true), ("https://master.example", "master.example", true),
        ("https://Master.Example:443", "master.example", true), ("http://127.0.0.1:9080", "127.0.0.1:9080", true),
        ("https://10.0.0.1:8443", "10.0.0.1:9443", false), ("https://evil.example", "10.0.0.1:9443", false),
        ("null", "10.0.0.1:9443", false), ("garbage", "10.0.0.1:9443", false),
    ])
    func sameOriginMeansHostAndPort(origin: String, authority: String, same: Bool) {
        #expect(SessionMiddleware.sameOrigin(origin, authority: authority) == same)
    }
}

@Suite struct ImagesViewTests {
    @Test func eachImageListsItsNodes() {
        var a = ViewsTests.node("node001", 1), b = ViewsTests.node("node002", 2)
        a.lastImage = "default@3"
        b.image = "rescue"
        b.nextImage = "default"
        let summary = NodeSummary(nodes: .success([a, b]), health: .failure(WireError(.notRunning, "cm-healthd is not running")))
        let page = Views.images(.success(["default", "rescue"]), summary: summary).text
        #expect(page.contains("<tr data-image=\"default\"><td>default</td><td><a href=\"/nodes/node001\">node001</a></td><td></td><td><a href=\"/nodes/node002\">node002</a></td></tr>"))
        #expect(page.contains("<tr data-image=\"rescue\"><td>rescue</td><td></td><td><a href=\"/nodes/node002\">node002</a></td><td></td></tr>"))
        #expect(Views.images(.success([]), summary: summary).text.contains("cmctl image build NAME"))
    }
}

@Suite struct RenderCacheTests {
    @Test func keptPerKeyAndAnswerClearedWhenFull() {
        let cache = RenderCache(capacity: 2)
        var renders = 0
        func get(_ key: String, _ version: UInt64) -> String {
            cache.get(key, version: version) { renders += 1; return HTML(raw: "\(key)@\(version)") }.text
        }
        #expect(get("a", 1) == "a@1" && get("a", 1) == "a@1" && renders == 1)
        #expect(get("a", 2) == "a@2" && renders == 2, "a new answer renders anew")
        #expect(get("b", 2) == "b@2" && cache.count == 2)
        #expect(get("c", 2) == "c@2" && cache.count == 1, "full: cleared, then kept")
        #expect(get("a", 2) == "a@2" && renders == 5)
    }
}
