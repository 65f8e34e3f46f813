@testable import CMHealth
import Foundation
import Testing

@Suite struct ProbeHTTPVerdictTests {
    static func response(_ status: Int?, _ body: String = "", error: String? = nil, truncated: Bool = false) -> HTTPProbeResponse {
        HTTPProbeResponse(status: status, error: error, body: Array(body.utf8), truncated: truncated, totalTime: .microseconds(3140))
    }

    static let cases: [(HTTPExpectation, HTTPProbeResponse, Bool, String)] = [
        (HTTPExpectation(), response(200, "ok"), true, "HTTP 200 in 3.1 ms"),
        (HTTPExpectation(), response(302), true, "HTTP 302 in 3.1 ms"),
        (HTTPExpectation(), response(404), false, "HTTP 404 (expected 200-399)"),
        (HTTPExpectation(statuses: [200]), response(503), false, "HTTP 503 (expected 200)"),
        (HTTPExpectation(statuses: [200, 204]), response(500), false, "HTTP 500 (expected 200 or 204)"),
        (HTTPExpectation(statuses: [503]), response(503), true, "HTTP 503 in 3.1 ms"),
        (HTTPExpectation(body: "ok"), response(200, "all ok\n"), true, "HTTP 200 in 3.1 ms"),
        (HTTPExpectation(body: "ok"), response(200, "sick"), false, "body does not contain \"ok\""),
        (HTTPExpectation(body: "ok"), response(200, "xxxx", truncated: true), false, "body does not contain \"ok\" in the first 4 bytes"),
        (HTTPExpectation(body: "a\nb"), response(200, "a"), false, "body does not contain \"a b\""),
        (HTTPExpectation(body: ""), response(200, ""), true, "HTTP 200 in 3.1 ms"),
        (HTTPExpectation(), response(nil, error: "timeout after 1s"), false, "timeout after 1s"),
        (HTTPExpectation(), response(nil, error: "connect: Connection refused"), false, "connect: Connection refused"),
    ]

    @Test(arguments: cases)
    func verdict(expect: HTTPExpectation, response: HTTPProbeResponse, ok: Bool, message: String) {
        let r = expect.judge(response)
        #expect(r.ok == ok)
        #expect(r.message == message)
        #expect(r.latency == .microseconds(3140))
    }

    @Test func byteSearch() {
        #expect(Array("hello world".utf8).containsBytes(of: "o w"))
        #expect(Array("hello world".utf8).containsBytes(of: "world"))
        #expect(!Array("hello world".utf8).containsBytes(of: "worlds"))
        #expect(!Array("ab".utf8).containsBytes(of: "abc"))
        #expect([UInt8]().containsBytes(of: ""))
        #expect(Array("grüße".utf8).containsBytes(of: "üß"))
    }

    @Test func messagesStayOneBoundedLine() {
        let r = ProbeResult(ok: false, message: "line one\nline two\r\t" + String(repeating: "é", count: 300), latency: .zero)
        #expect(!r.message.contains("\n") && !r.message.contains("\r") && !r.message.contains("\t"))
        #expect(r.message.utf8.count <= ProbeResult.messageLimit)
        #expect(r.message.hasPrefix("line one line two  "))
    }

    @Test func millisecondText() {
        #expect(milliText(.microseconds(3140)) == "3.1 ms")
        #expect(milliText(.microseconds(3150)) == "3.2 ms")
        #expect(milliText(.zero) == "0.0 ms")
        #expect(milliText(.seconds(1) + .microseconds(204_700)) == "1204.7 ms")
        #expect(milliText(.milliseconds(-5)) == "0.0 ms")
        #expect(timeoutText(.seconds(1)) == "timeout after 1s")
        #expect(timeoutText(.milliseconds(250)) == "timeout after 250ms")
    }
}

/// Against real peers on loopback. Serialized: they share one nginx and measure time.
@Suite(.serialized) final class ProbeHTTPTests {
    let engine: HTTPEngine
    let nginx: ProbeNginx?

    init() throws {
        engine = try HTTPEngine()
        nginx = ProbeNginx.start()
    }

    deinit {
        engine.shutdown()
        nginx?.stop()
    }

    func request(_ url: String, timeout: Duration = .seconds(2), host: String? = nil, maxBody: Int = HTTPProbeRequest.defaultMaxBodyBytes) -> HTTPProbeRequest {
        HTTPProbeRequest(url: url, host: host, timeout: timeout, maxBodyBytes: maxBody)
    }

    @Test func statusAndBodyAgainstNginx() async {
        guard let nginx else { return }
        let ok = await httpProbe(engine, request(nginx.url("/")), expect: HTTPExpectation(statuses: [200], body: "ok"))
        #expect(ok.ok, "\(ok.message)")
        #expect(ok.message.hasPrefix("HTTP 200 in ") && ok.message.hasSuffix(" ms"), "\(ok.message)")
        #expect(ok.latency > .zero && ok.latency < .seconds(2))

        let down = await httpProbe(engine, request(nginx.url("/down")), expect: HTTPExpectation(statuses: [200]))
        #expect(!down.ok && down.message == "HTTP 503 (expected 200)", "\(down.message)")

        let downAny = await httpProbe(engine, request(nginx.url("/down")))
        #expect(!downAny.ok && downAny.message == "HTTP 503 (expected 200-399)", "\(downAny.message)")

        let wrongBody = await httpProbe(engine, request(nginx.url("/")), expect: HTTPExpectation(body: "healthy"))
        #expect(!wrongBody.ok && wrongBody.message == "body does not contain \"healthy\"", "\(wrongBody.message)")

        let missing = await httpProbe(engine, request(nginx.url("/nope")))
        #expect(!missing.ok && missing.message == "HTTP 404 (expected 200-399)")
    }

    @Test func hostHeaderIsSent() async {
        guard let nginx else { return }
        let r = await engine.get(request(nginx.url("/host"), host: "web.cluster.example"))
        #expect(r.status == 200)
        #expect(String(decoding: r.body, as: UTF8.self) == "web.cluster.example")
        let bad = await engine.get(request(nginx.url("/host"), host: "a\r\nX-Evil: 1"))
        #expect(bad.status == nil && bad.error == "Host header contains a control character")
    }

    @Test func connectionsAreReused() async {
        guard let nginx else { return }
        // nginx's $connection is the serial number of the connection that carries the
        // request: the same number on sequential probes means one kept-alive connection.
        var serials: Set<String> = []
        for _ in 0..<5 {
            let r = await engine.get(request(nginx.url("/conn")))
            #expect(r.status == 200)
            serials.insert(String(decoding: r.body, as: UTF8.self))
        }
        #expect(serials.count == 1, "connections used: \(serials.sorted())")
    }

    @Test func bodyIsCutAtTheLimit() async {
        guard let nginx else { return }
        let small = await engine.get(request(nginx.url("/big")))
        #expect(small.status == 200 && small.truncated)
        #expect(small.body.count == HTTPProbeRequest.defaultMaxBodyBytes)
        let judged = HTTPExpectation(body: "x").judge(small)
        #expect(judged.ok, "\(judged.message)")
        // A scrape gets the whole page.
        let whole = await engine.get(request(nginx.url("/big"), maxBody: HTTPProbeRequest.scrapeMaxBodyBytes))
        #expect(whole.status == 200 && !whole.truncated && whole.body.count == ProbeNginx.bigBodyBytes)
    }

    @Test func closedPortIsRefused() async {
        guard let closed = ProbeTestSocket(.closed) else { return }
        let r = await httpProbe(engine, request("http://127.0.0.1:\(closed.port)/"))
        #expect(!r.ok && r.message == "connect: Connection refused", "\(r.message)")
    }

    @Test func silentServerTimesOut() async {
        guard let silent = ProbeTestSocket(.silent) else { return }
        let start = ContinuousClock.now
        let r = await httpProbe(engine, request("http://127.0.0.1:\(silent.port)/", timeout: .milliseconds(300)))
        let elapsed = ContinuousClock.now - start
        #expect(!r.ok && r.message == "timeout after 300ms", "\(r.message)")
        // The probe's own timer, not a hang: the silent server never answers at all. 20 s leaves
        // room for two cores busy with every other suite.
        #expect(elapsed >= .milliseconds(290) && elapsed < .seconds(20), "\(elapsed)")
    }

    @Test func onlyHTTPSchemesAreAllowed() async {
        let r = await engine.get(request("file:///etc/hostname"))
        #expect(r.status == nil && r.error != nil, "\(String(describing: r.error))")
    }

    @Test func fiveHundredProbesAtOnce() async {
        guard let nginx else { return }
        let engine = self.engine
        let url = nginx.url("/")
        let start = ContinuousClock.now
        let failures = await withTaskGroup(of: String?.self) { group in
            for _ in 0..<500 {
                group.addTask {
                    let r = await httpProbe(engine, HTTPProbeRequest(url: url, timeout: .seconds(10)), expect: HTTPExpectation(statuses: [200], body: "ok"))
                    return r.ok ? nil : r.message
                }
            }
            var failures: [String] = []
            for await f in group { if let f { failures.append(f) } }
            return failures
        }
        #expect(failures.isEmpty, "\(failures.count) failed, e.g. \(failures.prefix(3))")
        print("500 concurrent HTTP probes in \(ContinuousClock.now - start)")
    }

    @Test func shutdownFailsLaterRequests() async throws {
        let own = try HTTPEngine()
        own.shutdown()
        own.shutdown()  // twice is harmless
        let r = await own.get(request("http://127.0.0.1:1/"))
        #expect(r.status == nil && r.error == "shutting down")
    }

    @Test func shutdownFailsRequestsInFlight() async throws {
        guard let silent = ProbeTestSocket(.silent) else { return }
        let own = try HTTPEngine()
        let url = "http://127.0.0.1:\(silent.port)/"
        async let pending = own.get(HTTPProbeRequest(url: url, timeout: .seconds(30)))
        // Give the worker a moment to start the transfer, then stop it.
        try await Task.sleep(for: .milliseconds(100))
        let start = ContinuousClock.now
        own.shutdown()
        let r = await pending
        #expect(r.status == nil && r.error == "shutting down")
        #expect(ContinuousClock.now - start < .seconds(2))
    }

    @Test func inFlightLimitRefusesTheExcess() async throws {
        guard let silent = ProbeTestSocket(.silent) else { return }
        let own = try HTTPEngine(maxInFlight: 2)
        defer { own.shutdown() }
        let url = "http://127.0.0.1:\(silent.port)/"
        let results = await withTaskGroup(of: HTTPProbeResponse.self) { group in
            for _ in 0..<3 { group.addTask { await own.get(HTTPProbeRequest(url: url, timeout: .milliseconds(500))) } }
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(results.filter { $0.error == "timeout after 500ms" }.count == 2)
        #expect(results.filter { $0.error == "too many HTTP requests in flight (2)" }.count == 1)
    }
}
