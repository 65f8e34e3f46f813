import CMConfig
import CMTypes
import Foundation
import Testing

let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

let baseCluster = """
    [cluster]
    name = "test"
    [[node]]
    name = "node001"
    address = "10.77.0.11"
    groups = ["web"]
    [[node]]
    name = "node002"
    address = "10.77.0.12"
    """

func cluster(_ text: String = baseCluster) throws -> ClusterConfig {
    try ClusterConfig.parse(ConfigSource(path: "cluster.toml", text: text))
}

func healthdErrors(_ text: String) throws -> String {
    do {
        _ = try HealthdConfig.parse(ConfigSource(path: "healthd.toml", text: text), cluster: try cluster())
        return "no error"
    } catch {
        return "\(error)"
    }
}

func clusterErrors(_ text: String) -> String {
    do {
        _ = try cluster(text)
        return "no error"
    } catch {
        return "\(error)"
    }
}

@Suite struct ExampleConfigTests {
    @Test func examplesLoadWithTheDefaultsTheirCommentsState() throws {
        let dir = repoRoot + "/etc/clustermaker"
        let c = try ClusterConfig.load(configDir: dir)
        #expect(c.name == "demo")
        #expect(c.nodes.map(\.name) == ["node001", "node002", "node003"])
        let h = try HealthdConfig.load(configDir: dir, cluster: c)
        #expect(h.healthd.maxInFlight == 1024)
        #expect(h.healthd.historyRetention == .seconds(30 * 86_400) && h.healthd.followPxed)
        #expect(h.defaults.interval == .seconds(2) && h.defaults.timeout == .seconds(1))
        #expect(h.defaults.rise == 2 && h.defaults.fall == 3 && h.defaults.jitterPercent == 10)
        #expect(h.metrics.port == 9100 && h.metrics.interval == .seconds(15))
        #expect(h.checks.map(\.name) == ["ping", "ssh", "web"])
        let web = try #require(h.checks.last)
        #expect(web.interval == .seconds(1) && web.rise == 2 && web.fall == 2)
        // web targets group:web (node001, node002); ping and ssh every node.
        #expect(h.instances(of: c).map { "\($0.0.name)@\($0.1.name)" } == [
            "ping@node001", "ssh@node001", "web@node001", "ping@node002", "ssh@node002", "web@node002", "ping@node003", "ssh@node003",
        ])
    }

    @Test func emptyHealthdUsesDefaults() throws {
        let h = try HealthdConfig.parse(ConfigSource(path: "h.toml", text: ""), cluster: try cluster())
        #expect(h == HealthdConfig())
    }
}

@Suite struct BadConfigTests {
    /// A table of bad healthd.toml files and the exact message each must produce.
    @Test(arguments: [
        ("[[check]]\nname = \"web\"\ntype = \"tcp\"\nport = 70000\n",
         #"healthd.toml:4:8: check "web": port: 70000 out of range 1…65535"#),
        ("[defaults]\nintervall = \"1s\"\n",
         #"healthd.toml:2:1: defaults: intervall: unknown key (did you mean "interval"?)"#),
        ("[defaults]\nrise = \"2\"\n",
         #"healthd.toml:2:8: defaults: rise: expected an integer, found a string"#),
        ("[defaults]\ninterval = \"5 seconds\"\n",
         #"healthd.toml:2:12: defaults: interval: "5 seconds" is not a duration (write NUMBER UNIT, units ms s m h d w, e.g. "500ms", "1m30s")"#),
        ("[defaults]\njitter = \"80%\"\n",
         #"healthd.toml:2:10: defaults: jitter: 80% out of range 0%…50%"#),
        ("[defaults]\ninterval = \"1s\"\ntimeout = \"2s\"\n",
         #"healthd.toml:3:11: defaults: timeout: 2s is longer than interval 1s"#),
        ("[[check]]\nname = \"a\"\ntype = \"icmp\"\n[[check]]\nname = \"a\"\ntype = \"icmp\"\n",
         #"healthd.toml:5:8: check "a": name: duplicate check name "a""#),
        ("[[check]]\nname = \"a\"\ntype = \"icmp\"\nnodes = [\"node009\"]\n",
         #"healthd.toml:4:9: check "a": nodes: unknown node "node009""#),
        ("[[check]]\nname = \"a\"\ntype = \"icmp\"\nnodes = [\"group:db\"]\n",
         #"healthd.toml:4:9: check "a": nodes: no node is in group "db""#),
        ("[[check]]\nname = \"a\"\ntype = \"http\"\nport = 80\ntls_verify = false\n",
         #"healthd.toml:5:14: check "a": tls_verify: not used by http checks"#),
        ("[[check]]\nname = \"a\"\ntype = \"icmp\"\nport = 80\n",
         #"healthd.toml:4:8: check "a": port: not used by icmp checks"#),
        ("[[check]]\nname = \"a\"\ntype = \"exec\"\ncommand = [\"check_disk\"]\n",
         #"healthd.toml:4:11: check "a": command: "check_disk" must be an absolute path (there is no shell and no PATH search)"#),
        ("[[check]]\nname = \"a\"\ntype = \"tcp\"\n",
         #"healthd.toml:1:1: check "a": missing required key "port""#),
        ("[[check]]\nname = \"a\"\ntype = \"smtp\"\n",
         #"healthd.toml:3:8: check "a": type: "smtp" is not a check type (icmp, tcp, http, https, exec)"#),
        ("[[check]]\nname = \"a\"\ntype = \"http\"\nport = 80\nexpect_status = [200, 700]\n",
         #"healthd.toml:5:17: check "a": expect_status: 700 out of range 100…599"#),
        ("[metrics]\nraw_retention = \"30d\"\n",
         #"healthd.toml:2:17: metrics: raw_retention: longer than minute_retention 7d"#),
        ("[metrics]\npath = \"metrics\"\n",
         #"healthd.toml:2:8: metrics: path: must start with "/""#),
        ("[healthd]\nmax_in_flight = 0\n",
         #"healthd.toml:2:17: healthd: max_in_flight: 0 out of range 1…100000"#),
        ("[[check]]\nname = \"bad name!\"\ntype = \"icmp\"\n",
         #"healthd.toml:2:8: check "bad name!": name: "bad name!" is not a valid check name (1-64 of A-Z, a-z, 0-9, "_", ".", "-")"#),
        ("[defaults\ninterval = \"1s\"\n",
         "healthd.toml:1:10: Error while parsing table header: expected ']', saw '\\n'"),
        ("[[check]]\nname = \"a\"\ntype = \"exec\"\n",
         #"healthd.toml:1:1: check "a": missing required key "command""#),
        // Found by fuzzing: toml++ aborts on these, so they must never reach it.
        ("# ok\n[[\u{E9}]]\nx = 1\n",
         "healthd.toml:2:3: a table header must start with a key"),
        ("[a]\nk\u{E9} = 1\n",
         #"healthd.toml:2:2: non-ASCII character "\#u{E9}" outside a string or comment (keys must be ASCII or quoted)"#),
        ("[ `check]\n",
         "healthd.toml:1:3: a table header must start with a key"),
        ("[defaults]\n# bell \u{07}\n",
         "healthd.toml:2:8: control character U+0007 is not allowed"),
        ("[[check]]\nname = \"caf\u{E9} \u{2713}\" # \u{E9}t\u{E9}\ntype = \"icmp\"\n",
         #"healthd.toml:2:8: check "café ✓": name: "café ✓" is not a valid check name (1-64 of A-Z, a-z, 0-9, "_", ".", "-")"#),
    ])
    func healthdErrorMessages(text: String, expected: String) throws {
        #expect(try healthdErrors(text) == expected)
    }

    @Test(arguments: [
        ("[cluster]\nname = \"Big Cluster\"\n",
         #"cluster.toml:2:8: cluster: name: "Big Cluster" is not a valid name (1-63 of a-z, 0-9, "-")"#),
        ("[cluster]\nname = \"c\"\n[[network]]\nname = \"n\"\ncidr = \"10.0.0.0/24\"\ngateway = \"10.0.1.1\"\n",
         #"cluster.toml:6:11: network "n": gateway: 10.0.1.1 is not inside 10.0.0.0/24"#),
        ("[cluster]\nname = \"c\"\n[[network]]\nname = \"n\"\ncidr = \"10.0.0.1/24\"\n",
         #"cluster.toml:5:8: network "n": cidr: "10.0.0.1/24" is not an IPv4 network (address/prefix with no host bits set, e.g. "10.77.0.0/24")"#),
        ("[cluster]\nname = \"c\"\n[[node]]\nname = \"a\"\naddress = \"10.0.0.1\"\n[[node]]\nname = \"b\"\naddress = \"10.0.0.1\"\n",
         #"cluster.toml:8:11: node "b": address: 10.0.0.1 is already node "a"'s address"#),
        ("[cluster]\nname = \"c\"\n[[node]]\nname = \"a\"\naddress = \"10.0.0.1\"\nmac = \"52:54:00:zz:00:01\"\n",
         #"cluster.toml:6:7: node "a": mac: "52:54:00:zz:00:01" is not a MAC address (six hex octets separated by ":")"#),
        ("[cluster]\nname = \"c\"\n[[node]]\nname = \"Node_1\"\naddress = \"10.0.0.1\"\n",
         #"cluster.toml:4:8: node "Node_1": name: "Node_1" is not a valid node name (1-63 of a-z, 0-9, "-")"#),
        ("[cluster]\n",
         #"cluster.toml:1:1: cluster: missing required key "name""#),
        ("[cluster]\nname = \"c\"\n[[node]]\nname = \"a\"\naddress = \"10.0.0.300\"\n",
         #"cluster.toml:5:11: node "a": address: "10.0.0.300" is not an IPv4 address"#),
    ])
    func clusterErrorMessages(text: String, expected: String) {
        #expect(clusterErrors(text) == expected)
    }

    @Test func everyErrorIsReportedNotJustTheFirst() throws {
        let text = "[defaults]\nrise = 0\nfall = 0\nbogus = 1\n"
        let lines = try healthdErrors(text).split(separator: "\n")
        #expect(lines.count == 3)
    }

    @Test func missingFileNamesThePath() {
        #expect(throws: ConfigErrors([ConfigError(file: "/nonexistent/cluster.toml", line: 0, column: 0, key: nil, message: "cannot read: no such file")])) {
            try ClusterConfig.load(configDir: "/nonexistent")
        }
    }
}

@Suite struct PositionTests {
    @Test func keysTablesAndArraysOfTables() {
        let p = TOMLPositions(source: """
            top = 1
            [metrics]
              interval = "15s"   # comment with x = 1
            [[check]]
            name = "a"
            [[check]]
            "quoted key" = 2
            dotted.key = 3
            """)
        #expect(p.keys["top"] == .init(line: 1, column: 1))
        #expect(p.values["metrics.interval"] == .init(line: 3, column: 14))
        #expect(p.keys["check[0]"] == .init(line: 4, column: 1))
        #expect(p.keys["check[1].quoted key"] == .init(line: 7, column: 1))
        #expect(p.keys["check[1].dotted.key"] == .init(line: 8, column: 1))
        #expect(p.position(of: "check[1].missing", preferValue: false) == .init(line: 6, column: 1))
    }

    @Test func multiLineValuesAreSkippedNotIndexed() {
        let p = TOMLPositions(source: """
            a = \"\"\"
            fake = 1
            [notatable]
            \"\"\"
            b = [
              "x = 2",   # [also not a table]
              "y",
            ]
            c = { d = 1, e = "]" }
            f = 'literal [x]'
            g = '''
            h = 3
            '''
            last = true
            """)
        #expect(p.keys["fake"] == nil)
        #expect(p.keys["notatable"] == nil)
        #expect(p.keys["h"] == nil)
        #expect(p.keys["b"] == .init(line: 5, column: 1))
        #expect(p.keys["c"] == .init(line: 9, column: 1))
        #expect(p.keys["f"] == .init(line: 10, column: 1))
        #expect(p.keys["last"] == .init(line: 14, column: 1))
    }
}
