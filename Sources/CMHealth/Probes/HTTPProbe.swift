import Glibc

/// What makes an HTTP answer healthy.
public struct HTTPExpectation: Sendable, Equatable {
    /// Accepted status codes; empty accepts any 200…399 (a redirect is a live server).
    public var statuses: [Int]
    /// Text the body must contain (bytes, case-sensitive), searched in the kept part of
    /// the body (`HTTPProbeRequest.maxBodyBytes`).
    public var body: String?

    public init(statuses: [Int] = [], body: String? = nil) {
        self.statuses = statuses
        self.body = body
    }

    /// The verdict on one response. Pure, so the messages are tested without a server.
    public func judge(_ r: HTTPProbeResponse) -> ProbeResult {
        guard let status = r.status else {
            return ProbeResult(ok: false, message: r.error ?? "no response", latency: r.totalTime)
        }
        let statusOK = statuses.isEmpty ? (200...399).contains(status) : statuses.contains(status)
        guard statusOK else {
            let expected = statuses.isEmpty ? "200-399" : statuses.map(String.init).joined(separator: " or ")
            return ProbeResult(ok: false, message: "HTTP \(status) (expected \(expected))", latency: r.totalTime)
        }
        if let body, !r.body.containsBytes(of: body) {
            let searched = r.truncated ? " in the first \(r.body.count) bytes" : ""
            return ProbeResult(ok: false, message: "body does not contain \"\(body)\"\(searched)", latency: r.totalTime)
        }
        return ProbeResult(ok: true, message: "HTTP \(status) in \(milliText(r.totalTime))", latency: r.totalTime)
    }
}

/// One HTTP(S) check: GET through the shared engine, then `expect.judge`.
/// "HTTP 200 in 3.1 ms", "HTTP 503 (expected 200)", "body does not contain \"ok\"",
/// "timeout after 1s", "connect: Connection refused".
public func httpProbe(_ engine: HTTPEngine, _ request: HTTPProbeRequest, expect: HTTPExpectation = HTTPExpectation()) async -> ProbeResult {
    expect.judge(await engine.get(request))
}

extension [UInt8] {
    /// Substring search on bytes; bodies are at most a few MiB and needles a few words,
    /// so the plain scan (first byte, then compare) is enough.
    func containsBytes(of text: String) -> Bool {
        var needle = text
        return needle.withUTF8 { n in
            guard let first = n.first else { return true }
            guard n.count <= count else { return false }
            return withUnsafeBufferPointer { h in
                guard let hb = h.baseAddress, let nb = n.baseAddress else { return false }
                var i = 0
                let last = h.count - n.count
                while i <= last {
                    if h[i] == first, memcmp(hb + i, nb, n.count) == 0 { return true }
                    i += 1
                }
                return false
            }
        }
    }
}
