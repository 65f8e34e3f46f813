import CMConfig
import CMHealth
import CMTypes
import Testing

/// The daemon's view: one ProbeEngine, a ProbeSpec per check instance.
@Suite struct ProbeTests {
    let engine = try? ProbeEngine()
    let local = IPv4Address(127, 0, 0, 1)

    @Test func everyKindRunsThroughTheEngine() async throws {
        let engine = try #require(engine)
        defer { engine.shutdown() }
        let exec = await engine.run(.exec(argv: ["/bin/true"]), timeout: .seconds(2))
        #expect(exec.ok && exec.message == "exit 0")
        guard let closed = ProbeTestSocket(.closed) else { return }
        let tcp = await engine.run(.tcp(local, port: Int(closed.port)), timeout: .seconds(1))
        #expect(tcp.message == "connect: Connection refused")
        let http = await engine.run(.http(url: "http://127.0.0.1:\(closed.port)/", host: nil, tlsVerify: true, expectStatus: [], expectBody: nil), timeout: .seconds(1))
        #expect(http.message == "connect: Connection refused")
        let badPort = await engine.run(.tcp(local, port: 70000), timeout: .seconds(1))
        #expect(!badPort.ok)
        let icmp = await engine.run(.icmp(local), timeout: .seconds(1))
        #expect(icmp.ok || icmp.message.hasPrefix("icmp unavailable: "), "\(icmp.message)")
    }

    @Test func probeSpecFromConfigSubstitutesNodeAndAddress() throws {
        let node = NodeConfig(name: "node007", address: IPv4Address(10, 1, 2, 7))
        let check = CheckConfig(name: "x", kind: .exec(command: ["/usr/bin/check", "-H", "{address}", "--name={node}"]), targets: [.all],
                                interval: .seconds(1), timeout: .seconds(1), rise: 1, fall: 1, jitterPercent: 0)
        #expect(ProbeSpec(check: check, node: node) == .exec(argv: ["/usr/bin/check", "-H", "10.1.2.7", "--name=node007"]))
    }
}
