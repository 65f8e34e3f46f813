import CMConfig
import CMTypes
import Testing

func lbdErrors(_ text: String) -> String {
    do {
        _ = try LbdConfig.parse(ConfigSource(path: "lbd.toml", text: text))
        return "no error"
    } catch {
        return "\(error)"
    }
}

let minimalLbd = """
    [[frontend]]
    name = "web"
    listen = "127.0.0.1:8080"
    mode = "tcp"
    backend = "web"
    [[backend]]
    name = "web"
    [[backend.server]]
    address = "127.0.0.1:18081"

    """

@Suite struct LbdConfigTests {
    @Test func exampleLoadsWithTheDefaultsItsCommentsState() throws {
        let c = try LbdConfig.load(configDir: repoRoot + "/etc/clustermaker")
        #expect(c.lbd.threads == 0 && c.lbd.maxConnections == 10000 && c.lbd.pinThreads && c.lbd.incomingCPU)
        let unpinned = try LbdConfig.parse(ConfigSource(path: "lbd.toml", text: minimalLbd + "[lbd]\npin_threads = false\nincoming_cpu = false\n"))
        #expect(!unpinned.lbd.pinThreads && !unpinned.lbd.incomingCPU)
        #expect(c.frontends.map(\.name) == ["web", "ssh-nodes"])
        let web = try #require(c.frontends.first)
        #expect(web.mode == .http && web.listen == IPv4Endpoint("10.77.0.100:80"))
        #expect(web.connectTimeout == .seconds(2) && web.clientTimeout == .seconds(60) && web.serverTimeout == .seconds(60))
        #expect(web.maxHeaderBytes == 16384 && web.maxBodyBytes == 100 << 20 && !web.proxyProtocol)
        #expect(web.httpRequestTimeout == .seconds(10) && web.maxConnections == 0)
        let pool = try #require(c.backend(named: "web"))
        #expect(pool.algorithm == .roundrobin && pool.retries == 2 && pool.failBackoff == .seconds(5) && pool.healthCheck == "http")
        #expect(pool.servers.map(\.node) == ["node001", "node002", "node003"])
        #expect(pool.servers.map(\.backup) == [false, false, true])
        #expect(pool.servers[0].weight == 1 && pool.servers[0].maxConnections == 0)
        #expect(c.backend(named: "ssh")?.algorithm == .source)
    }

    @Test func minimalGetsDefaults() throws {
        let c = try LbdConfig.parse(ConfigSource(path: "lbd.toml", text: minimalLbd))
        #expect(c.backends == [BackendConfig(name: "web", servers: [ServerConfig(address: IPv4Endpoint("127.0.0.1:18081")!)])])
        #expect(c.backends[0].servers[0].node == "127.0.0.1")
        #expect(c.frontends == [FrontendConfig(name: "web", listen: IPv4Endpoint("127.0.0.1:8080")!, mode: .tcp, backend: "web")])
    }

    @Test func headDeadlineAndConnectionLimitOfAFrontend() throws {
        let http = minimalLbd.replacingOccurrences(of: "mode = \"tcp\"", with: "mode = \"http\"\nhttp_request_timeout = \"1500ms\"\nmax_connections = 50")
        let web = try #require(LbdConfig.parse(ConfigSource(path: "lbd.toml", text: http)).frontends.first)
        #expect(web.httpRequestTimeout == .milliseconds(1500) && web.maxConnections == 50)
        // A TCP frontend may be limited too; its default is the global limit only.
        let tcp = minimalLbd.replacingOccurrences(of: "mode = \"tcp\"", with: "mode = \"tcp\"\nmax_connections = 7")
        #expect(try LbdConfig.parse(ConfigSource(path: "lbd.toml", text: tcp)).frontends.first?.maxConnections == 7)
        #expect(try LbdConfig.parse(ConfigSource(path: "lbd.toml", text: minimalLbd)).frontends.first?.maxConnections == 0)
    }

    @Test(arguments: [
        (minimalLbd.replacingOccurrences(of: "127.0.0.1:8080", with: "127.0.0.1"),
         #"lbd.toml:3:10: frontend "web": listen: "127.0.0.1" is not an IPv4 address and port (e.g. "10.77.0.11:8080")"#),
        (minimalLbd.replacingOccurrences(of: "\"tcp\"", with: "\"udp\""), #"lbd.toml:4:8: frontend "web": mode: "udp" is not a mode (tcp or http)"#),
        (minimalLbd.replacingOccurrences(of: "backend = \"web\"", with: "backend = \"api\""), #"lbd.toml:5:11: frontend "web": backend: no [[backend]] is named "api""#),
        (minimalLbd.replacingOccurrences(of: "name = \"web\"\n[[backend.server]]", with: "name = \"web\"\nalgorithm = \"random\"\n[[backend.server]]"),
         #"lbd.toml:8:13: backend "web": algorithm: "random" is not an algorithm (roundrobin, leastconn, source)"#),
        (minimalLbd + "weight = 300\n", #"lbd.toml:10:10: backend "web": weight: 300 out of range 0…256"#),
        (minimalLbd + "[[backend.server]]\naddress = \"127.0.0.1:18081\"\n", #"lbd.toml:11:11: backend "web": address: 127.0.0.1:18081 is listed twice"#),
        (minimalLbd + "backup = true\n", #"lbd.toml:6:1: backend "web": every server is a backup; at least one must not be"#),
        ("[[backend]]\nname = \"web\"\n", #"lbd.toml:1:1: backend "web": has no [[backend.server]]"#),
        (minimalLbd.replacingOccurrences(of: "mode = \"tcp\"", with: "mode = \"http\"\nproxy_protocol = true"),
         #"lbd.toml:5:18: frontend "web": proxy_protocol: is for mode = "tcp"; HTTP mode sends X-Forwarded-For instead"#),
        (minimalLbd.replacingOccurrences(of: "mode = \"tcp\"", with: "mode = \"tcp\"\nmax_header_bytes = 4096"),
         #"lbd.toml:5:20: frontend "web": max_header_bytes: is for mode = "http""#),
        (minimalLbd.replacingOccurrences(of: "[[backend]]", with: "[[frontend]]\nname = \"web2\"\nlisten = \"127.0.0.1:8080\"\nmode = \"tcp\"\nbackend = \"web\"\n[[backend]]"),
         #"lbd.toml:8:10: frontend "web2": listen: 127.0.0.1:8080 is already frontend "web"'s"#),
        (minimalLbd + "[lbd]\nthreads = 100\n", #"lbd.toml:11:11: lbd: threads: 100 out of range 0…64"#),
        (minimalLbd + "wieght = 2\n", #"lbd.toml:10:1: backend "web": wieght: unknown key (did you mean "weight"?)"#),
        (minimalLbd.replacingOccurrences(of: "mode = \"tcp\"", with: "mode = \"tcp\"\nconnect_timeout = \"0s\""),
         #"lbd.toml:5:19: frontend "web": connect_timeout: 0s out of range 1ms…5m"#),
        (minimalLbd.replacingOccurrences(of: "mode = \"tcp\"", with: "mode = \"tcp\"\nhttp_request_timeout = \"5s\""),
         #"lbd.toml:5:24: frontend "web": http_request_timeout: is for mode = "http""#),
        (minimalLbd.replacingOccurrences(of: "mode = \"tcp\"", with: "mode = \"http\"\nhttp_request_timeout = \"50ms\""),
         #"lbd.toml:5:24: frontend "web": http_request_timeout: 50ms out of range 100ms…1h"#),
        (minimalLbd.replacingOccurrences(of: "mode = \"tcp\"", with: "mode = \"http\"\nhttp_request_timeout = 10"),
         #"lbd.toml:5:24: frontend "web": http_request_timeout: expected a string, found an integer"#),
        (minimalLbd.replacingOccurrences(of: "mode = \"tcp\"", with: "mode = \"tcp\"\nmax_connections = 2000000"),
         #"lbd.toml:5:19: frontend "web": max_connections: 2000000 out of range 0…1000000"#),
    ])
    func errorMessages(text: String, expected: String) {
        #expect(lbdErrors(text) == expected)
    }
}
