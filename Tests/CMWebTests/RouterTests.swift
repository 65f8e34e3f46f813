import CMAuth
import CMConfig
import CMTypes
@testable import CMConsole
@testable import CMWeb
import CMWire
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Synchronization
import Testing

/// Fake daemons behind real control sockets: the console talks CMWire to them exactly as to
/// cm-healthd, cm-lbd, cm-pxed and cm-snapd. What they were asked to do is recorded.
final class FakeSuite: Sendable {
    let runtime: String
    let drains = Mutex<[LbDrainRequest]>([])
    let inventory = Mutex<[String]>([])
    let checks = Mutex<[CheckStatus]>([])
    let snapshots = Mutex<[SnapshotCreateRequest]>([])

    init() throws {
        runtime = FileManager.default.temporaryDirectory.appendingPathComponent("cmweb-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: runtime, withIntermediateDirectories: true)
        checks.withLock {
            $0 = [ViewsTests.check("web", "node001", .up), ViewsTests.check("web", "node002", .down), ViewsTests.check("ssh", "node002", .up)]
        }
    }

    deinit { try? FileManager.default.removeItem(atPath: runtime) }

    /// Runs the fake daemons for the duration of `body`.
    func run<R: Sendable>(_ body: () async throws -> R) async throws -> R {
        var health = WireRouter(), lb = WireRouter(), pxe = WireRouter(), snap = WireRouter()
        snap.on(MessageType.snapshotList, SnapshotListRequest.self) { _, _ in
            let taken = self.snapshots.withLock { $0 }.enumerated().map { i, r in
                SnapshotInfo(id: i + 1, dataSet: r.dataSet, source: "/etc", backend: .hardlink, kind: r.kind, created: Date(), seconds: 0.25, note: r.note)
            }
            return SnapshotListReply(sets: [SnapshotSetStatus(name: "system", kind: "directory", paths: ["/etc", "/var/lib/clustermaker"],
                                                              backend: "hardlink (ext4)", timeline: true, snapshots: taken),
                                            SnapshotSetStatus(name: "pg", kind: "postgresql", paths: ["/var/lib/postgresql/15/main"], backend: "",
                                                              timeline: true, snapshots: [], problem: "no such directory")],
                                     store: "/var/lib/clustermaker/snapshots", nextTimeline: nil)
        }
        snap.on(MessageType.snapshotCreate, SnapshotCreateRequest.self) { r, _ in
            guard r.dataSet == "system" else { throw WireError(.notFound, "no data set \"\(r.dataSet)\" in snapd.toml") }
            let n = self.snapshots.withLock { $0.append(r); return $0.count }
            return SnapshotInfo(id: n, dataSet: r.dataSet, source: "/etc", backend: .hardlink, kind: r.kind, created: Date(), seconds: 0.25, note: r.note)
        }
        health.on(MessageType.healthList, HealthListRequest.self) { _, _ in HealthListReply(checks: self.checks.withLock { $0 }) }
        health.on(MessageType.healthSummary, HealthSummaryRequest.self) { _, _ in
            let checks = self.checks.withLock { $0 }
            var tallies: [NodeName: NodeHealthTally] = [:]
            for c in checks { tallies[c.id.node, default: NodeHealthTally(node: c.id.node, checks: 0, down: 0, unknown: 0, address: c.address)].count(c.state) }
            return HealthSummaryReply(up: checks.filter { $0.state == .up }.count, down: checks.filter { $0.state == .down }.count,
                                      unknown: checks.filter { $0.state == .unknown }.count,
                                      nodes: tallies.values.sorted { $0.node < $1.node }, notUp: checks.filter { $0.state != .up })
        }
        health.on(MessageType.metricsLatest, Empty.self) { _, _ in
            NodeMetricsLatestReply(nodes: [NodeLatestMetrics(node: "node001", at: Date(), error: nil, values: ["cpu_percent": 7.5])])
        }
        health.on(MessageType.healthHistory, HealthHistoryRequest.self) { _, _ in
            HealthHistoryReply(transitions: [HealthTransition(id: CheckID(check: "web", node: "node002"), from: .up, to: .down, at: Date(), message: "connection refused")])
        }
        lb.on(MessageType.lbStatus, Empty.self) { _, _ in
            LbStatusReply(frontends: [LbFrontendStatus(name: "www", listen: IPv4Endpoint("10.0.0.100:80")!, mode: "http", backend: "web", active: 1, total: 9,
                                                       requests: 9, requestsPerSecond: 2.5, errors: 0, retries: 0)],
                          backends: [LbBackendStatus(name: "web", algorithm: "roundrobin", servers: [
                              LbServerStatus(address: IPv4Endpoint("10.0.0.1:80")!, node: "node001", weight: 1, backup: false, state: .up, active: 1, total: 9, failures: 0, maxConnections: 0),
                          ])])
        }
        lb.on(MessageType.lbDrain, LbDrainRequest.self) { r, _ in
            self.drains.withLock { $0.append(r) }
            return LbDrainReply(servers: ["web/10.0.0.1:80"])
        }
        lb.on(MessageType.lbMetrics, Empty.self) { _, _ in LbMetricsReply(text: "# TYPE clustermaker_lb_requests_total counter\nclustermaker_lb_requests_total 9\n") }
        pxe.on(MessageType.nodeList, NodeListRequest.self) { _, _ in NodeListReply(nodes: [ViewsTests.node("node001", 1), ViewsTests.node("node002", 2)]) }
        pxe.on(MessageType.nodeShow, NodeRef.self) { r, _ in
            guard r.node == "node001" else { throw WireError(.notFound, "no node \(r.node)") }
            return ViewsTests.node("node001", 1)
        }
        pxe.on(MessageType.nodeAdd, NodeSpec.self) { r, _ in
            guard r.name != "node001" else { throw WireError(.conflict, "node001 exists") }
            self.inventory.withLock { $0.append("add \(r.name ?? "?") \(r.mac) \(r.address?.description ?? "-")") }
            return NodeInfo(name: r.name ?? "node003", mac: r.mac, group: "default")
        }
        pxe.on(MessageType.nodeSet, NodeSetRequest.self) { r, _ in
            self.inventory.withLock { $0.append("set \(r.node) next=\(r.nextImage ?? "nil")") }
            return ViewsTests.node(r.node, 1)
        }
        pxe.on(MessageType.nodeRemove, NodeRef.self) { r, _ in
            self.inventory.withLock { $0.append("rm \(r.node)") }
            return ViewsTests.node(r.node, 1)
        }
        pxe.on(MessageType.nodeReboot, NodeRebootRequest.self) { r, _ in
            guard r.node == "node001" else { throw WireError(.conflict, "node \(r.node) has no SSH host key on this master yet") }
            self.inventory.withLock { $0.append("reboot \(r.node) via \(r.method?.rawValue ?? "any") by \(r.requestedBy ?? "?")") }
            return NodeRebootReply(node: r.node, address: IPv4Address("10.0.0.1")!, via: r.method ?? .ssh)
        }
        let servers = [(SuiteDaemon.healthd, health), (.lbd, lb), (.pxed, pxe), (.snapd, snap)].map { daemon, router in
            (daemon, WireServer(daemon: daemon.name, version: "test", router: router, logger: Logger(label: "fake")) {
                DaemonStatus(daemon: daemon.name, version: "test", pid: getpid(), startedAt: Date(), status: "fake")
            })
        }
        var tasks: [Task<Void, any Error>] = []
        for (daemon, server) in servers {
            let (ready, continuation) = AsyncStream.makeStream(of: Void.self)
            tasks.append(Task { try await server.run(listener: .path(daemon.socketPath(runtimeDirectory: runtime))) { continuation.yield() } })
            for await _ in ready { break }
        }
        defer { for t in tasks { t.cancel() } }
        return try await body()
    }
}

@Suite struct RouterTests {
    static let password = "right-password"

    func withConsole(publicMetrics: Bool = true, _ body: @Sendable (any TestClientProtocol, FakeSuite) async throws -> Void) async throws {
        let fakes = try FakeSuite()
        var config = WebdConfig()
        config.http.listen = IPv4Endpoint("127.0.0.1:1")!
        config.auth.loginAttempts = 3
        config.auth.pam = false
        config.auth.publicMetrics = publicMetrics
        let users = try UsersFile.parse(UsersFile.line(user: "admin", password: Self.password, cost: 4), path: "/test/users")
        let app = WebApp(config: config, users: users, suite: SuiteClient(runtimeDirectory: fakes.runtime), cluster: "testcluster",
                         logger: Logger(label: "cm-webd"))
        try await fakes.run {
            try await Application(router: app.router()).test(.router) { client in try await body(client, fakes) }
        }
    }

    /// Logs in; returns the Cookie header value and the session's CSRF token.
    static func login(_ client: any TestClientProtocol) async throws -> (cookie: String, csrf: String) {
        let response = try await client.execute(uri: "/login", method: .post, headers: [.contentType: "application/x-www-form-urlencoded"],
                                                body: ByteBuffer(string: "user=admin&password=\(password)&next=%2Fnodes"))
        #expect(response.status == .found)
        #expect(response.headers[.location] == "/nodes")
        let setCookie = try #require(response.headers[.setCookie])
        #expect(setCookie.contains("HttpOnly") && setCookie.contains("SameSite=Strict"))
        let cookie = String(setCookie.split(separator: ";")[0])
        let page = try await client.execute(uri: "/", method: .get, headers: [.cookie: cookie])
        let html = String(buffer: page.body)
        let marker = "<meta name=\"csrf\" content=\""
        let start = try #require(html.range(of: marker)).upperBound
        return (cookie, String(html[start...].prefix { $0 != "\"" }))
    }

    @Test func nothingWithoutASession() async throws {
        try await withConsole(publicMetrics: false) { client, _ in
            let page = try await client.execute(uri: "/nodes?q=x", method: .get)
            #expect(page.status == .found && page.headers[.location] == "/login?next=%2Fnodes%3Fq%3Dx")
            for uri in ["/api/v1/nodes", "/events?topics=health", "/metrics"] {
                #expect(try await client.execute(uri: uri, method: .get).status == .unauthorized, "\(uri)")
            }
            #expect(try await client.execute(uri: "/nodes", method: .get, headers: [.cookie: "cm_session=forged"]).status == .found)
            #expect(try await client.execute(uri: "/login", method: .get).status == .ok)
            #expect(try await client.execute(uri: "/static/console.css", method: .get).status == .ok)
        }
    }

    @Test func wrongPasswordsAreThrottled() async throws {
        try await withConsole { client, _ in
            for _ in 0..<3 {
                let r = try await client.execute(uri: "/login", method: .post, headers: [.contentType: "application/x-www-form-urlencoded"],
                                                 body: ByteBuffer(string: "user=admin&password=guess"))
                #expect(r.status == .ok && r.headers[.setCookie] == nil && String(buffer: r.body).contains("Wrong user name or password"))
            }
            let r = try await client.execute(uri: "/login", method: .post, headers: [.contentType: "application/x-www-form-urlencoded"],
                                             body: ByteBuffer(string: "user=admin&password=\(Self.password)"))
            #expect(r.status == .tooManyRequests && r.headers[.retryAfter] != nil, "even the right password waits out the window")
        }
    }

    @Test func pagesShowWhatTheDaemonsSay() async throws {
        try await withConsole { client, _ in
            let (cookie, _) = try await Self.login(client)
            let overview = String(buffer: try await client.execute(uri: "/", method: .get, headers: [.cookie: cookie]).body)
            #expect(overview.contains("<b id=\"nodes-down\">1</b> of 2 nodes down") && overview.contains("connection refused"))
            #expect(overview.contains("cm-vipd is not running"), "a daemon that is not running is said, not an error page")
            let nodes = try await client.execute(uri: "/nodes?health=down", method: .get, headers: [.cookie: cookie])
            let html = String(buffer: nodes.body)
            #expect(nodes.status == .ok && html.contains("data-node=\"node002\"") && !html.contains("data-node=\"node001\""))
            #expect(nodes.headers[.contentSecurityPolicy]?.contains("script-src 'self'") == true && nodes.headers[.cacheControl] == "no-store")
            let node = try await client.execute(uri: "/nodes/node001", method: .get, headers: [.cookie: cookie])
            #expect(node.status == .ok && String(buffer: node.body).contains("52:54:00:00:00:01"))
            #expect(try await client.execute(uri: "/nodes/..%2Fetc", method: .get, headers: [.cookie: cookie]).status == .notFound)
            let lb = String(buffer: try await client.execute(uri: "/lb", method: .get, headers: [.cookie: cookie]).body)
            #expect(lb.contains("data-server=\"web/10.0.0.1:80\"") && lb.contains("2.5"))
            let api = try await client.execute(uri: "/api/v1/nodes", method: .get, headers: [.cookie: cookie])
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .iso8601
            #expect(try decoder.decode([NodeInfo].self, from: Data(buffer: api.body)).map(\.name) == ["node001", "node002"])
            let vip = try await client.execute(uri: "/api/v1/vip", method: .get, headers: [.cookie: cookie])
            #expect(vip.status == .serviceUnavailable && String(buffer: vip.body).contains("not_running"))
            #expect(try await client.execute(uri: "/api/v1/nodes/node009", method: .get, headers: [.cookie: cookie]).status == .notFound)
            #expect(try await client.execute(uri: "/no/such/page", method: .get, headers: [.cookie: cookie]).status == .notFound)
        }
    }

    @Test func actionsNeedTheCSRFToken() async throws {
        try await withConsole { client, fakes in
            let (cookie, csrf) = try await Self.login(client)
            let form: HTTPFields = [.cookie: cookie, .contentType: "application/x-www-form-urlencoded"]
            let without = try await client.execute(uri: "/actions/drain", method: .post, headers: form, body: ByteBuffer(string: "target=node001&drain=1"))
            #expect(without.status == .forbidden)
            let wrong = try await client.execute(uri: "/actions/drain", method: .post, headers: form, body: ByteBuffer(string: "csrf=\(csrf)x&target=node001&drain=1"))
            #expect(wrong.status == .forbidden)
            var foreign = form
            foreign[.origin] = "https://evil.example"
            let crossOrigin = try await client.execute(uri: "/actions/drain", method: .post, headers: foreign, body: ByteBuffer(string: "csrf=\(csrf)&target=node001&drain=1"))
            #expect(crossOrigin.status == .forbidden)
            #expect(fakes.drains.withLock { $0.isEmpty }, "nothing reached cm-lbd")

            let ok = try await client.execute(uri: "/actions/drain", method: .post, headers: form, body: ByteBuffer(string: "csrf=\(csrf)&target=node001&drain=1&next=%2Flb"))
            #expect(ok.status == .found && ok.headers[.location] == "/lb")
            var api: HTTPFields = [.cookie: cookie, .contentType: "application/json"]
            api[HTTPField.Name("X-CSRF-Token")!] = csrf
            let undrain = try await client.execute(uri: "/api/v1/lb/drain", method: .post, headers: api, body: ByteBuffer(string: #"{"target":"10.0.0.1:80","drain":false}"#))
            #expect(undrain.status == .ok)
            #expect(fakes.drains.withLock { $0 } == [LbDrainRequest(target: "node001", drain: true), LbDrainRequest(target: "10.0.0.1:80", drain: false)])

            // Logged out, the same cookie and token do nothing.
            #expect(try await client.execute(uri: "/logout", method: .post, headers: form, body: ByteBuffer(string: "csrf=\(csrf)")).status == .found)
            #expect(try await client.execute(uri: "/actions/drain", method: .post, headers: form, body: ByteBuffer(string: "csrf=\(csrf)&target=node001")).status == .unauthorized)
            #expect(fakes.drains.withLock { $0.count } == 2)
        }
    }

    @Test func inventoryActionsGoToCmPxed() async throws {
        try await withConsole { client, fakes in
            let (cookie, csrf) = try await Self.login(client)
            let form: HTTPFields = [.cookie: cookie, .contentType: "application/x-www-form-urlencoded"]
            let page = String(buffer: try await client.execute(uri: "/nodes/node001", method: .get, headers: [.cookie: cookie]).body)
            #expect(page.contains("action=\"/actions/node/next-boot\"") && page.contains("action=\"/actions/node/remove\""))
            #expect(try await client.execute(uri: "/actions/node/add", method: .post, headers: form,
                                             body: ByteBuffer(string: "mac=52:54:00:aa:bb:cc&name=node003&address=10.0.0.3")).status == .forbidden,
                    "no CSRF token, no node")
            let added = try await client.execute(uri: "/actions/node/add", method: .post, headers: form,
                                                 body: ByteBuffer(string: "csrf=\(csrf)&mac=52%3A54%3A00%3Aaa%3Abb%3Acc&name=node003&address=10.0.0.3&group="))
            #expect(added.status == .found && added.headers[.location] == "/nodes/node003")
            let bad = try await client.execute(uri: "/actions/node/add", method: .post, headers: form, body: ByteBuffer(string: "csrf=\(csrf)&mac=nonsense"))
            #expect(bad.status == .badRequest && String(buffer: bad.body).contains("not a MAC address"))
            let taken = try await client.execute(uri: "/actions/node/add", method: .post, headers: form,
                                                 body: ByteBuffer(string: "csrf=\(csrf)&mac=52:54:00:aa:bb:cd&name=node001"))
            #expect(taken.status == .conflict && String(buffer: taken.body).contains("node001 exists"), "cm-pxed's reason reaches the page")
            #expect(try await client.execute(uri: "/actions/node/next-boot", method: .post, headers: form,
                                             body: ByteBuffer(string: "csrf=\(csrf)&node=node001&image=rescue")).status == .found)
            #expect(try await client.execute(uri: "/actions/node/remove", method: .post, headers: form,
                                             body: ByteBuffer(string: "csrf=\(csrf)&node=node002")).status == .found)
            #expect(page.contains("action=\"/actions/node/reboot\""))
            #expect(try await client.execute(uri: "/actions/node/reboot", method: .post, headers: form,
                                             body: ByteBuffer(string: "csrf=\(csrf)&node=node001")).status == .found)
            let refused = try await client.execute(uri: "/actions/node/reboot", method: .post, headers: form, body: ByteBuffer(string: "csrf=\(csrf)&node=node002"))
            #expect(refused.status == .conflict && String(buffer: refused.body).contains("no SSH host key"), "cm-pxed's reason reaches the page")
            #expect(try await client.execute(uri: "/actions/node/reboot", method: .post, headers: form, body: ByteBuffer(string: "node=node001")).status == .forbidden,
                    "no CSRF token, no reboot")
            var api: HTTPFields = [.cookie: cookie]
            api[HTTPField.Name("X-CSRF-Token")!] = csrf
            let viaAPI = try await client.execute(uri: "/api/v1/nodes/node001/reboot?via=ipmi", method: .post, headers: api)
            #expect(viaAPI.status == .ok && String(buffer: viaAPI.body).contains("\"via\":\"ipmi\""))
            #expect(try await client.execute(uri: "/api/v1/nodes/node001/reboot?via=telnet", method: .post, headers: api).status == .badRequest)
            #expect(try await client.execute(uri: "/actions/node/reboot", method: .post, headers: form,
                                             body: ByteBuffer(string: "csrf=\(csrf)&node=node001&via=ssh")).status == .found)
            #expect(fakes.inventory.withLock { $0 } == ["add node003 52:54:00:aa:bb:cc 10.0.0.3", "set node001 next=rescue", "rm node002",
                                                        "reboot node001 via any by admin (cm-webd)", "reboot node001 via ipmi by admin (cm-webd)",
                                                        "reboot node001 via ssh by admin (cm-webd)"])
        }
    }

    @Test func snapshotsAreListedAndTakenThroughCmSnapd() async throws {
        try await withConsole { client, fakes in
            let (cookie, csrf) = try await Self.login(client)
            let form: HTTPFields = [.cookie: cookie, .contentType: "application/x-www-form-urlencoded"]
            #expect(try await client.execute(uri: "/actions/snapshot/create", method: .post, headers: form,
                                             body: ByteBuffer(string: "set=system&note=x")).status == .forbidden, "no CSRF token, no snapshot")
            let taken = try await client.execute(uri: "/actions/snapshot/create", method: .post, headers: form,
                                                 body: ByteBuffer(string: "csrf=\(csrf)&set=system&note=before+the+VLAN"))
            #expect(taken.status == .found && taken.headers[.location] == "/snapshots")
            let unknown = try await client.execute(uri: "/actions/snapshot/create", method: .post, headers: form, body: ByteBuffer(string: "csrf=\(csrf)&set=nope"))
            #expect(unknown.status == .notFound && String(buffer: unknown.body).contains("no data set"), "cm-snapd's reason reaches the page")
            #expect(try await client.execute(uri: "/actions/snapshot/create", method: .post, headers: form,
                                             body: ByteBuffer(string: "csrf=\(csrf)&set=..%2Fetc")).status == .badRequest)
            let page = String(buffer: try await client.execute(uri: "/snapshots", method: .get, headers: [.cookie: cookie]).body)
            #expect(page.contains("<section class=\"snapshots\" data-set=\"system\">") && page.contains("before the VLAN"))
            #expect(page.contains("no such directory") && page.contains("action=\"/actions/snapshot/create\""))
            var api: HTTPFields = [.cookie: cookie, .contentType: "application/json"]
            api[HTTPField.Name("X-CSRF-Token")!] = csrf
            let viaAPI = try await client.execute(uri: "/api/v1/snapshots", method: .post, headers: api, body: ByteBuffer(string: #"{"dataSet":"system","kind":"single"}"#))
            #expect(viaAPI.status == .ok && String(buffer: viaAPI.body).contains("\"id\":2"))
            let listed = String(buffer: try await client.execute(uri: "/api/v1/snapshots", method: .get, headers: [.cookie: cookie]).body)
            #expect(listed.contains("\"store\":\"\\/var\\/lib\\/clustermaker\\/snapshots\"") || listed.contains("/var/lib/clustermaker/snapshots"))
            #expect(fakes.snapshots.withLock { $0.map { "\($0.dataSet) \($0.note ?? "-") \($0.requestedBy ?? "?")" } } ==
                    ["system before the VLAN admin (cm-webd)", "system - admin (cm-webd)"])
        }
    }

    @Test func badRequestsGet4xxAndTheServerGoesOn() async throws {
        try await withConsole { client, _ in
            let (cookie, csrf) = try await Self.login(client)
            for uri in ["/static/../../etc/passwd", "/static/%2e%2e%2fetc%2fpasswd", "/static/", "/static/chart.min.js.map"] {
                #expect(try await client.execute(uri: uri, method: .get).status == .notFound, "\(uri)")
            }
            let big = String(repeating: "a", count: 100_000)
            let tooLarge = try await client.execute(uri: "/login", method: .post, headers: [.contentType: "application/x-www-form-urlencoded"],
                                                    body: ByteBuffer(string: "user=\(big)"))
            #expect(tooLarge.status == .contentTooLarge)
            let evil = try await client.execute(uri: "/login", method: .post, headers: [.contentType: "application/x-www-form-urlencoded"],
                                                body: ByteBuffer(string: "user=admin&password=\(Self.password)&next=%2F%2Fevil.example"))
            #expect(evil.headers[.location] == "/")
            var api: HTTPFields = [.cookie: cookie, .contentType: "application/json"]
            api[HTTPField.Name("X-CSRF-Token")!] = csrf
            #expect(try await client.execute(uri: "/api/v1/lb/drain", method: .post, headers: api, body: ByteBuffer(string: "{not json")).status == .badRequest)
            #expect(try await client.execute(uri: "/events?topics=nothing", method: .get, headers: [.cookie: cookie]).status == .badRequest)
            #expect(try await client.execute(uri: "/", method: .get, headers: [.cookie: cookie]).status == .ok, "still serving")
        }
    }

    @Test func metricsForTheWholeSuite() async throws {
        try await withConsole { client, _ in
            let r = try await client.execute(uri: "/metrics", method: .get)
            let text = String(buffer: r.body)
            #expect(r.status == .ok && r.headers[.contentType]?.hasPrefix("text/plain; version=0.0.4") == true)
            #expect(text.contains("clustermaker_check_up{check=\"web\",node=\"node002\",type=\"tcp\"} 0"))
            #expect(text.contains("clustermaker_daemon_up{daemon=\"cm-vipd\"} 0") && text.contains("clustermaker_lb_requests_total 9"))
            #expect(text.contains("clustermaker_node_cpu_percent{node=\"node001\"} 7.5\n") && text.contains("clustermaker_node_scrape_up{node=\"node001\"} 1\n"))
        }
    }
}
