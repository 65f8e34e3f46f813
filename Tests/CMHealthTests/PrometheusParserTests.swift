import CMWire
import CMHealth
import Foundation
import Testing

let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

func parse(_ text: String) throws(PrometheusParseError) -> [PrometheusSample] {
    try PrometheusTextParser.parse(Array(text.utf8))
}

@Suite struct PrometheusParserTests {
    @Test func parsesARealNodeExporterPage() throws {
        let bytes = try [UInt8](Data(contentsOf: fixtures.appendingPathComponent("node-exporter.prom")))
        let samples = try PrometheusTextParser.parse(bytes)
        #expect(samples.count > 500)
        #expect(samples.contains { $0.name == "node_cpu_seconds_total" && $0.label("mode") == "idle" })
        #expect(samples.contains { $0.name == "node_memory_MemAvailable_bytes" && $0.value > 0 })
        #expect(samples.contains { $0.name == "node_load1" })
    }

    @Test func samplesLabelsEscapesAndSpecialValues() throws {
        let s = try parse("""
            # HELP x help text
            # TYPE x counter
            x 1
            y{a="1",b="two"} 2.5e3
            z{path="C:\\\\dir",q="say \\"hi\\"",nl="a\\nb",} -Inf 1700000000000
            w NaN
            v +Inf\r
            """)
        #expect(s.count == 5)
        #expect(s[0] == PrometheusSample(name: "x", value: 1))
        #expect(s[1] == PrometheusSample(name: "y", labels: [("a", "1"), ("b", "two")], value: 2500))
        #expect(s[2].label("path") == "C:\\dir" && s[2].label("q") == "say \"hi\"" && s[2].label("nl") == "a\nb")
        #expect(s[2].value == -.infinity && s[2].timestampMs == 1_700_000_000_000)
        #expect(s[3].value.isNaN)
        #expect(s[4].value == .infinity)
    }

    @Test(arguments: [
        ("x{a=\"1\" 1\n", "line 1:9: expected \",\" or \"}\""),
        ("x{a=1} 1\n", "line 1:5: expected a quoted label value"),
        ("x\n", "line 1:2: expected a space before the value"),
        ("ok 1\nx abc\n", "line 2:3: expected a number"),
        ("x 1 notatime\n", "line 1:5: expected an integer timestamp"),
        ("1x 1\n", "line 1:1: expected a metric name"),
        ("x{a=\"\\q\"} 1\n", "line 1:7: unknown escape \\q"),
        ("x{a=\"open} 1\n", "line 1:13: unterminated label value"),
        ("x nan\n", "line 1:3: expected a number"),
        ("x 1 2 3\n", "line 1:7: unexpected text after the timestamp"),
    ])
    func malformedInputNamesLineAndColumn(text: String, expected: String) {
        do {
            _ = try parse(text)
            Issue.record("accepted \(text.debugDescription)")
        } catch {
            #expect(error.description == expected)
        }
    }

    @Test func boundsAreEnforced() {
        let long = "x{a=\"" + String(repeating: "a", count: 70_000) + "\"} 1"
        #expect(throws: PrometheusParseError.self) { try parse(long) }
        let many = (0..<11).map { "m\($0) 1" }.joined(separator: "\n")
        #expect(throws: PrometheusParseError(line: 11, column: 1, message: "more than 10 samples")) {
            try PrometheusTextParser.parse(Array(many.utf8), maximumSamples: 10)
        }
        let labels = "x{" + (0..<65).map { "l\($0)=\"v\"" }.joined(separator: ",") + "} 1"
        #expect(throws: PrometheusParseError.self) { try parse(labels) }
    }
}

@Suite struct NodeMetricsTests {
    func page(idle: Double, user: Double, rx: Double, tx: Double, read: Double, written: Double) -> [PrometheusSample] {
        try! parse("""
            node_cpu_seconds_total{cpu="0",mode="idle"} \(idle)
            node_cpu_seconds_total{cpu="0",mode="user"} \(user)
            node_memory_MemTotal_bytes 1000
            node_memory_MemAvailable_bytes 250
            node_load1 0.5
            node_load5 0.25
            node_load15 0.125
            node_network_receive_bytes_total{device="eth0"} \(rx)
            node_network_receive_bytes_total{device="lo"} 999999
            node_network_transmit_bytes_total{device="eth0"} \(tx)
            node_disk_read_bytes_total{device="vda"} \(read)
            node_disk_written_bytes_total{device="vda"} \(written)
            node_filesystem_size_bytes{mountpoint="/"} 200
            node_filesystem_avail_bytes{mountpoint="/"} 50
            node_filesystem_size_bytes{mountpoint="/boot"} 10
            """)
    }

    @Test func ratesNeedTwoScrapes() {
        var c = NodeMetricsCalculator()
        let first = c.update(samples: page(idle: 100, user: 100, rx: 1000, tx: 0, read: 0, written: 0), atMs: 0)
        #expect(first["cpu_percent"] == nil && first["net_rx_bytes_per_s"] == nil)
        #expect(first["mem_used_bytes"] == 750 && first["mem_percent"] == 75 && first["mem_total_bytes"] == 1000)
        #expect(first["load1"] == 0.5 && first["load15"] == 0.125 && first["fs_used_percent"] == 75)
        // 10 s later: 5 s idle, 5 s user of 10 s CPU → 50 %; eth0 received 20,000 bytes → 2,000 B/s.
        let second = c.update(samples: page(idle: 105, user: 105, rx: 21000, tx: 500, read: 1000, written: 4000), atMs: 10_000)
        #expect(second["cpu_percent"] == 50)
        #expect(second["net_rx_bytes_per_s"] == 2000 && second["net_tx_bytes_per_s"] == 50)
        #expect(second["disk_read_bytes_per_s"] == 100 && second["disk_write_bytes_per_s"] == 400)
    }

    @Test func counterResetYieldsNoRate() {
        var c = NodeMetricsCalculator()
        _ = c.update(samples: page(idle: 100, user: 100, rx: 5000, tx: 0, read: 0, written: 0), atMs: 0)
        let after = c.update(samples: page(idle: 101, user: 101, rx: 10, tx: 0, read: 0, written: 0), atMs: 1000)
        #expect(after["net_rx_bytes_per_s"] == nil)
        #expect(after["cpu_percent"] == 50)
    }

    @Test func realPageGivesEverySeries() throws {
        let bytes = try [UInt8](Data(contentsOf: fixtures.appendingPathComponent("node-exporter.prom")))
        var c = NodeMetricsCalculator()
        let samples = try PrometheusTextParser.parse(bytes)
        _ = c.update(samples: samples, atMs: 0)
        let values = c.update(samples: samples, atMs: 15_000)
        for name in ["mem_total_bytes", "mem_used_bytes", "mem_percent", "load1", "load5", "load15", "net_rx_bytes_per_s", "net_tx_bytes_per_s", "disk_read_bytes_per_s", "disk_write_bytes_per_s"] {
            #expect(values[name] != nil, "\(name)")
        }
    }
}
