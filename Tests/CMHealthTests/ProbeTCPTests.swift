import CMHealth
import CMTypes
import NIOPosix
import Testing

@Suite struct ProbeTCPTests {
    let prober: TCPProber

    init() throws { prober = try TCPProber(group: MultiThreadedEventLoopGroup.singleton) }
    let local = IPv4Address(127, 0, 0, 1)

    @Test func openPortConnects() async {
        guard let silent = ProbeTestSocket(.silent) else { return }
        let r = await prober.probe(local, port: silent.port, timeout: .seconds(1))
        #expect(r.ok, "\(r.message)")
        #expect(r.message.hasPrefix("connected in ") && r.message.hasSuffix(" ms"), "\(r.message)")
    }

    @Test func closedPortIsRefused() async {
        guard let closed = ProbeTestSocket(.closed) else { return }
        let r = await prober.probe(local, port: closed.port, timeout: .seconds(30))
        #expect(!r.ok && r.message == "connect: Connection refused", "\(r.message)")
        // Refused, not timed out: far under the 30 s timer even on a machine busy with other
        // tests (1.1 s seen when every suite ran at once on two cores).
        #expect(r.latency < .seconds(15), "\(r.latency)")
    }

    @Test func droppedSynTimesOut() async {
        guard let full = ProbeTestSocket(.full) else { return }
        let start = ContinuousClock.now
        let r = await prober.probe(local, port: full.port, timeout: .milliseconds(300))
        let elapsed = ContinuousClock.now - start
        #expect(!r.ok && r.message == "timeout after 300ms", "\(r.message)")
        // Without the probe's own timer the kernel would retry the SYN for about two minutes;
        // 20 s leaves room for a machine busy with other tests (5.9 s seen after a build).
        #expect(elapsed >= .milliseconds(290) && elapsed < .seconds(20), "\(elapsed)")
    }

    /// The probe closes with an RST (SO_LINGER 0), so a thousand probes a second leave no
    /// TIME_WAIT sockets behind: the peer reads ECONNRESET, not an orderly end of file.
    @Test func closesWithReset() async throws {
        guard let silent = ProbeTestSocket(.silent) else { return }
        let r = await prober.probe(local, port: silent.port, timeout: .seconds(1))
        #expect(r.ok)
        let conn = accept(silent.fd, nil, nil)
        #expect(conn >= 0)
        defer { close(conn) }
        var byte: UInt8 = 0
        let n = read(conn, &byte, 1)
        #expect(n < 0 && errno == ECONNRESET, "read returned \(n)")
    }

    @Test func manyProbesAtOnce() async {
        guard let silent = ProbeTestSocket(.silent) else { return }
        let prober = self.prober, local = self.local, port = silent.port
        // Fewer than the listen backlog (64), so none is dropped.
        let oks = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<50 { group.addTask { await prober.probe(local, port: port, timeout: .seconds(2)).ok } }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(oks == 50)
    }

    /// Connects in flight when the prober stops, and any asked for after, end at once.
    @Test func shutdownEndsConnectsInFlight() async {
        guard let full = ProbeTestSocket(.full) else { return }
        let prober = self.prober, local = self.local
        let pending = Task { await prober.probe(local, port: full.port, timeout: .seconds(30)) }
        try? await Task.sleep(for: .milliseconds(100))
        prober.shutdown()
        let r = await pending.value
        #expect(!r.ok && r.message == "connect: shutting down" && r.latency < .seconds(20), "\(r.message)")
        let later = await prober.probe(local, port: full.port, timeout: .seconds(1))
        #expect(later.message == "connect: shutting down")
    }
}
