import CMConfig
import CMHealth
import CMTypes
import Foundation
import Testing

/// A real nginx on a free loopback port for the duration of a test.
final class TestNginx {
    let dir: String
    let port: Int
    let process: Process

    init?() {
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/nginx") else { return nil }
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("cm-nginx-\(UUID().uuidString.prefix(8))").path
        port = Int.random(in: 20_000...45_000)
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let conf = """
            worker_processes 1; pid \(dir)/nginx.pid; error_log \(dir)/error.log; daemon off;
            events { worker_connections 2048; }
            http { access_log off; client_body_temp_path \(dir); proxy_temp_path \(dir); fastcgi_temp_path \(dir); uwsgi_temp_path \(dir); scgi_temp_path \(dir);
              server { listen 127.0.0.1:\(port); location / { return 200 "ok\\n"; } location /down { return 503 "sick\\n"; } location /slow { return 200 "late"; } } }
            """
        guard FileManager.default.createFile(atPath: dir + "/nginx.conf", contents: Data(conf.utf8)) else { return nil }
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/nginx")
        process.arguments = ["-c", dir + "/nginx.conf", "-p", dir]
        guard (try? process.run()) != nil else { return nil }
        // Wait until it accepts connections.
        for _ in 0..<100 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = in_port_t(UInt16(port).bigEndian)
            sa.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
            let ok = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0
            close(fd)
            if ok { return }
            usleep(50_000)
        }
        return nil
    }

    deinit {
        process.terminate()
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: dir)
    }
}

@Suite(.serialized) struct ProbeTests {
    let engine = try! ProbeEngine()
    let local = IPv4Address(127, 0, 0, 1)

    func http(_ path: String, port: Int, expectStatus: [Int] = [], body: String? = nil, timeout: Duration = .seconds(2)) async -> ProbeResult {
        await engine.run(.http(url: "http://127.0.0.1:\(port)\(path)", host: nil, tlsVerify: true, expectStatus: expectStatus, expectBody: body), timeout: timeout)
    }

    @Test func httpAgainstRealNginx() async throws {
        guard let nginx = TestNginx() else {
            print("skipped: nginx not installed (scripts/test installs nginx-light)")
            return
        }
        let ok = await http("/", port: nginx.port, body: "ok")
        #expect(ok.ok, "\(ok.message)")
        #expect(ok.message.hasPrefix("HTTP 200 in "))
        let down = await http("/down", port: nginx.port)
        #expect(!down.ok && down.message == "HTTP 503 (expected 2xx or 3xx)")
        let expected503 = await http("/down", port: nginx.port, expectStatus: [503])
        #expect(expected503.ok)
        let wrongBody = await http("/", port: nginx.port, body: "healthy")
        #expect(!wrongBody.ok && wrongBody.message == "HTTP 200 but body does not contain \"healthy\"")
        let tcp = await engine.run(.tcp(local, port: nginx.port), timeout: .seconds(1))
        #expect(tcp.ok && tcp.message.hasPrefix("connected in "))
    }

    @Test func manyConcurrentHTTPProbes() async throws {
        guard let nginx = TestNginx() else { return }
        let port = nginx.port
        let engine = self.engine
        let results = await withTaskGroup(of: Bool.self) { group -> [Bool] in
            for _ in 0..<500 {
                group.addTask {
                    await engine.run(.http(url: "http://127.0.0.1:\(port)/", host: nil, tlsVerify: true, expectStatus: [], expectBody: "ok"), timeout: .seconds(5)).ok
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(results.count == 500)
        #expect(results.allSatisfy { $0 })
    }

    @Test func closedPortIsRefused() async {
        // Port 1 on loopback: nothing listens there.
        let h = await http("/", port: 1)
        #expect(!h.ok && h.message.contains("onnect"), "\(h.message)")
        let t = await engine.run(.tcp(local, port: 1), timeout: .seconds(1))
        #expect(t == ProbeResult(ok: false, message: "connect: Connection refused", latency: t.latency))
    }

    @Test func silentServerTimesOut() async throws {
        // A listener that accepts (kernel backlog) but never answers.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        _ = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        listen(fd, 16)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        let port = Int(UInt16(bigEndian: sa.sin_port))
        let start = ContinuousClock.now
        let r = await http("/", port: port, timeout: .milliseconds(300))
        #expect(!r.ok && r.message == "timeout after 300ms", "\(r.message)")
        #expect(ContinuousClock.now - start < .seconds(2))
    }

    @Test func execProbes() async {
        let t = await engine.run(.exec(argv: ["/bin/true"]), timeout: .seconds(2))
        #expect(t.ok && t.message == "exit 0")
        let f = await engine.run(.exec(argv: ["/bin/sh", "-c", "echo disk full; exit 2"]), timeout: .seconds(2))
        #expect(!f.ok && f.message == "exit 2: disk full")
        let start = ContinuousClock.now
        let slow = await engine.run(.exec(argv: ["/bin/sh", "-c", "sleep 5 & sleep 5"]), timeout: .milliseconds(200))
        #expect(!slow.ok && slow.message == "killed after timeout 200ms")
        #expect(ContinuousClock.now - start < .milliseconds(1500))
        let missing = await engine.run(.exec(argv: ["/nonexistent/probe"]), timeout: .seconds(1))
        #expect(!missing.ok && missing.message.hasPrefix("exec /nonexistent/probe:"), "\(missing.message)")
    }

    @Test func icmpEchoToLoopback() async {
        guard (try? ICMPEngine()) != nil else {
            print("skipped: neither an ICMP datagram socket (net.ipv4.ping_group_range) nor a raw socket (CAP_NET_RAW) is allowed here")
            return
        }
        let r = await engine.run(.icmp(local), timeout: .seconds(1))
        #expect(r.ok && r.message.hasPrefix("echo reply in "), "\(r.message)")
    }

    @Test func probeSpecFromConfigSubstitutesNodeAndAddress() throws {
        let node = NodeConfig(name: "node007", address: IPv4Address(10, 1, 2, 7))
        let check = CheckConfig(name: "x", kind: .exec(command: ["/usr/bin/check", "-H", "{address}", "--name={node}"]), targets: [.all],
                                interval: .seconds(1), timeout: .seconds(1), rise: 1, fall: 1, jitterPercent: 0)
        #expect(ProbeSpec(check: check, node: node) == .exec(argv: ["/usr/bin/check", "-H", "10.1.2.7", "--name=node007"]))
    }
}

@Suite struct ICMPCodecTests {
    @Test func roundTripAndChecksum() throws {
        let echo = ICMPEcho(type: ICMPEcho.request, identifier: 0x1234, sequence: 7, payload: Array("abc".utf8))
        let bytes = echo.serialize()
        #expect(ICMPEcho.checksum(bytes) == 0)
        #expect(try ICMPEcho(parsing: bytes[...]) == echo)
        var corrupt = bytes
        corrupt[9] ^= 0xff
        #expect(throws: ICMPEcho.ParseError.badChecksum) { try ICMPEcho(parsing: corrupt[...]) }
        #expect(throws: ICMPEcho.ParseError.tooShort(3)) { try ICMPEcho(parsing: [0, 0, 0][...]) }
    }

    /// RFC 1071's example words.
    @Test func internetChecksum() {
        #expect(ICMPEcho.checksum([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]) == ~UInt16(0xddf2))
    }
}

/// SplitMix64: a seeded generator, so schedule tests are repeatable.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

@Suite struct ScheduleTests {
    @Test func firstProbesSpreadOverTheInterval() {
        var rng = SplitMix64(state: 42)
        let s = ProbeSchedule(interval: .seconds(1), jitterPercent: 10)
        let firsts = (0..<1000).map { _ in s.firstDelay(using: &rng).milliseconds }
        #expect(firsts.allSatisfy { (0..<1000).contains($0) })
        // Every 100 ms slot gets some of the 1,000 checks: they do not fire together.
        let slots = Dictionary(grouping: firsts, by: { $0 / 100 }).mapValues(\.count)
        #expect(slots.count == 10)
        #expect(slots.values.allSatisfy { (60...140).contains($0) })
    }

    @Test func jitterStaysInBounds() {
        var rng = SplitMix64(state: 7)
        let s = ProbeSchedule(interval: .seconds(2), jitterPercent: 10)
        let delays = (0..<1000).map { _ in s.nextDelay(using: &rng).milliseconds }
        #expect(delays.allSatisfy { (1800...2200).contains($0) })
        #expect(Set(delays).count > 100)
        var none = SplitMix64(state: 1)
        #expect(ProbeSchedule(interval: .seconds(2), jitterPercent: 0).nextDelay(using: &none) == .seconds(2))
    }
}
