@testable import CMLB
import CMTypes
import CMWire
import Foundation
import Testing

@Suite struct LBMetricsTests {
    let status = LbStatusReply(
        frontends: [
            LbFrontendStatus(name: "web", listen: IPv4Endpoint("10.0.0.1:80")!, mode: "http", backend: "pool", active: 3, total: 120,
                             requests: 4567, requestsPerSecond: 12.5, errors: 2, retries: 1, maxConnections: 500, full: 4, requestTimeouts: 7),
            LbFrontendStatus(name: "db", listen: IPv4Endpoint("10.0.0.1:5432")!, mode: "tcp", backend: "pg", active: 0, total: 9,
                             requests: 9, requestsPerSecond: 0, errors: 0, retries: 0),
        ],
        backends: [
            LbBackendStatus(name: "pool", algorithm: "roundrobin", servers: [
                LbServerStatus(address: IPv4Endpoint("10.0.1.1:8080")!, node: "node01", weight: 2, backup: false, state: .up,
                               active: 2, total: 80, failures: 0, maxConnections: 100),
                LbServerStatus(address: IPv4Endpoint("10.0.1.2:8080")!, node: "node02", weight: 1, backup: true, state: .drained,
                               active: 1, total: 40, failures: 5, maxConnections: 0),
            ]),
            LbBackendStatus(name: "pg", algorithm: "leastconn", servers: []),
        ])

    /// Read back with the parser cm-healthd scrapes node exporters with.
    func samples() throws -> [PrometheusSample] {
        let text = LBMetrics.render(status, loops: [.init(index: 0, cpu: 0, connections: 2), .init(index: 1, cpu: nil, connections: 1)])
        return try PrometheusTextParser.parse(Array(text.utf8))
    }

    func value(_ samples: [PrometheusSample], _ name: String, _ labels: [String: String]) -> Double? {
        let matching = samples.filter { s in s.name == name && labels.allSatisfy { s.label($0.key) == $0.value } }
        return matching.count == 1 ? matching[0].value : nil
    }

    @Test func frontendCounters() throws {
        let s = try samples()
        #expect(value(s, "cm_lbd_frontend_requests_total", ["frontend": "web", "mode": "http", "backend": "pool"]) == 4567)
        #expect(value(s, "cm_lbd_frontend_connections", ["frontend": "web"]) == 3)
        #expect(value(s, "cm_lbd_frontend_connections_total", ["frontend": "db"]) == 9)
        #expect(value(s, "cm_lbd_frontend_errors_total", ["frontend": "web"]) == 2)
        #expect(value(s, "cm_lbd_frontend_retries_total", ["frontend": "web"]) == 1)
        #expect(value(s, "cm_lbd_frontend_request_timeouts_total", ["frontend": "web"]) == 7)
        #expect(value(s, "cm_lbd_frontend_max_connections", ["frontend": "web"]) == 500)
        #expect(value(s, "cm_lbd_frontend_max_connections", ["frontend": "db"]) == 0)
        #expect(value(s, "cm_lbd_frontend_full_total", ["frontend": "web"]) == 4)
    }

    @Test func serversAndTheirStateSet() throws {
        let s = try samples()
        let one = ["backend": "pool", "server": "10.0.1.1:8080", "node": "node01"]
        let two = ["backend": "pool", "server": "10.0.1.2:8080", "node": "node02"]
        #expect(value(s, "cm_lbd_server_up", one) == 1)
        #expect(value(s, "cm_lbd_server_up", two) == 0)
        #expect(value(s, "cm_lbd_server_state", two.merging(["state": "drained"]) { a, _ in a }) == 1)
        // Every state is listed for every server, exactly one of them set.
        let states = s.filter { $0.name == "cm_lbd_server_state" && $0.label("node") == "node02" }
        #expect(states.count == LbServerState.allCases.count)
        #expect(states.map(\.value).reduce(0, +) == 1)
        #expect(value(s, "cm_lbd_server_failures_total", two) == 5)
        #expect(value(s, "cm_lbd_server_connections_total", one) == 80)
        #expect(value(s, "cm_lbd_server_weight", one) == 2)
        #expect(value(s, "cm_lbd_server_backup", two) == 1)
        #expect(value(s, "cm_lbd_server_max_connections", one) == 100)
    }

    /// A cmctl newer than the running cm-lbd reads its status without the later counters.
    @Test func aStatusWithoutTheLaterCountersDecodes() throws {
        let old = #"{"name":"web","listen":"10.0.0.1:80","mode":"http","backend":"pool","active":1,"total":2,"requests":3,"requestsPerSecond":0,"errors":0,"retries":0}"#
        let f = try WireJSON.decoder().decode(LbFrontendStatus.self, from: Data(old.utf8))
        #expect(f.total == 2 && f.maxConnections == 0 && f.full == 0 && f.requestTimeouts == 0)
        let again = try WireJSON.decoder().decode(LbFrontendStatus.self, from: WireJSON.encoder().encode(status.frontends[0]))
        #expect(again == status.frontends[0])
    }

    @Test func loops() throws {
        let s = try samples()
        #expect(value(s, "cm_lbd_loop_connections", ["loop": "0", "cpu": "0"]) == 2)
        #expect(value(s, "cm_lbd_loop_connections", ["loop": "1", "cpu": ""]) == 1)
    }

    @Test func everyFamilyHasHelpAndTypeOnce() {
        let text = LBMetrics.render(status, loops: [])
        let types = text.split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }.map { $0.split(separator: " ")[2] }
        let helps = text.split(separator: "\n").filter { $0.hasPrefix("# HELP ") }.map { $0.split(separator: " ")[2] }
        #expect(types.count == 17)
        #expect(Set(types).count == types.count)
        #expect(helps == types)
    }
}
