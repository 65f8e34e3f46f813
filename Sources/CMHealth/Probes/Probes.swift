import CMConfig
import CMTypes
import Foundation
import NIOCore
import NIOPosix

public struct ProbeResult: Sendable, Equatable {
    public var ok: Bool
    /// One line: "HTTP 200 in 3.1 ms", "connect: Connection refused", "timeout after 1s".
    public var message: String
    public var latency: Duration

    public init(ok: Bool, message: String, latency: Duration) {
        self.ok = ok
        self.message = message
        self.latency = latency
    }
}

/// What to probe, resolved from a check and its target node once, not on every probe.
public enum ProbeSpec: Sendable, Equatable {
    case icmp(IPv4Address)
    case tcp(IPv4Address, port: Int)
    case http(url: String, host: String?, tlsVerify: Bool, expectStatus: [Int], expectBody: String?)
    case exec(argv: [String])

    public init(check: CheckConfig, node: NodeConfig) {
        switch check.kind {
        case .icmp:
            self = .icmp(node.address)
        case .tcp(let port):
            self = .tcp(node.address, port: port)
        case .http(let h):
            self = .http(url: "\(h.tls ? "https" : "http")://\(node.address):\(h.port)\(h.path)", host: h.host, tlsVerify: h.tlsVerify,
                         expectStatus: h.expectStatus, expectBody: h.expectBody)
        case .exec(let command):
            self = .exec(argv: command.map {
                $0.replacingOccurrences(of: "{node}", with: node.name.rawValue).replacingOccurrences(of: "{address}", with: node.address.description)
            })
        }
    }
}

/// Runs probes of every kind; one per daemon.
public final class ProbeEngine: Sendable {
    public let http: HTTPEngine
    let icmp: ICMPEngine?
    let icmpError: String?
    let group: any EventLoopGroup

    public init(group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) throws {
        self.http = HTTPEngine()
        self.group = group
        do {
            self.icmp = try ICMPEngine()
            self.icmpError = nil
        } catch {
            self.icmp = nil
            self.icmpError = "\(error)"
        }
    }

    public func shutdown() {
        http.shutdown()
        icmp?.shutdown()
    }

    public func run(_ spec: ProbeSpec, timeout: Duration) async -> ProbeResult {
        switch spec {
        case .icmp(let address):
            guard let icmp else { return ProbeResult(ok: false, message: "icmp unavailable: \(icmpError ?? "no socket")", latency: .zero) }
            return await icmp.ping(address, timeout: timeout)
        case .tcp(let address, let port):
            return await tcpConnect(address, port: port, timeout: timeout)
        case .http(let url, let host, let tlsVerify, let expectStatus, let expectBody):
            let response = await http.get(HTTPProbeRequest(url: url, host: host, timeout: timeout, tlsVerify: tlsVerify))
            return Self.judge(response, expectStatus: expectStatus, expectBody: expectBody)
        case .exec(let argv):
            return await ExecProbe.run(argv, timeout: timeout)
        }
    }

    /// The HTTP verdict: status in the expected list (empty: any 2xx/3xx) and, if asked, the
    /// body contains the expected text.
    static func judge(_ r: HTTPProbeResponse, expectStatus: [Int], expectBody: String?) -> ProbeResult {
        guard let status = r.status else { return ProbeResult(ok: false, message: r.error ?? "no response", latency: r.totalTime) }
        let ms = String(format: "%.1f", r.totalTime.seconds * 1000)
        let statusOK = expectStatus.isEmpty ? (200...399).contains(status) : expectStatus.contains(status)
        guard statusOK else {
            let expected = expectStatus.isEmpty ? "2xx or 3xx" : expectStatus.map(String.init).joined(separator: " or ")
            return ProbeResult(ok: false, message: "HTTP \(status) (expected \(expected))", latency: r.totalTime)
        }
        if let expectBody, !r.body.contains(subsequence: Array(expectBody.utf8)) {
            return ProbeResult(ok: false, message: "HTTP \(status) but body does not contain \"\(expectBody)\"", latency: r.totalTime)
        }
        return ProbeResult(ok: true, message: "HTTP \(status) in \(ms) ms", latency: r.totalTime)
    }

    /// TCP: connect and close at once. SwiftNIO's event loops do the connect, so a thousand
    /// probes a second cost no threads.
    func tcpConnect(_ address: IPv4Address, port: Int, timeout: Duration) async -> ProbeResult {
        let start = ContinuousClock.now
        do {
            let target = try SocketAddress(ipAddress: address.description, port: port)
            let channel = try await ClientBootstrap(group: group)
                .connectTimeout(.milliseconds(max(1, timeout.milliseconds)))
                .connect(to: target).get()
            let elapsed = ContinuousClock.now - start
            // SO_LINGER 0: close with RST, so a thousand probes a second leave no TIME_WAIT behind.
            if let provider = channel as? any SocketOptionProvider {
                try? await provider.unsafeSetSocketOption(level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_LINGER),
                                                          value: linger(l_onoff: 1, l_linger: 0)).get()
            }
            try? await channel.close()
            return ProbeResult(ok: true, message: "connected in \(String(format: "%.1f", elapsed.seconds * 1000)) ms", latency: elapsed)
        } catch ChannelError.connectTimeout {
            return ProbeResult(ok: false, message: "timeout after \(DurationText.format(timeout))", latency: ContinuousClock.now - start)
        } catch let error as IOError {
            return ProbeResult(ok: false, message: "connect: \(String(cString: strerror(error.errnoCode)))", latency: ContinuousClock.now - start)
        } catch {
            return ProbeResult(ok: false, message: "connect: \(error)", latency: ContinuousClock.now - start)
        }
    }
}

extension Array where Element == UInt8 {
    func contains(subsequence needle: [UInt8]) -> Bool {
        guard !needle.isEmpty else { return true }
        guard needle.count <= count else { return false }
        let first = needle[0]
        var i = startIndex
        while i <= count - needle.count {
            if self[i] == first, self[i..<(i + needle.count)].elementsEqual(needle) { return true }
            i += 1
        }
        return false
    }
}

/// When each probe of one check fires: the first at a random point of the first interval, so
/// that a thousand checks started together do not fire together; then every interval, moved
/// by up to ±jitter% of it.
public struct ProbeSchedule: Sendable {
    public var interval: Duration
    public var jitterPercent: Int

    public init(interval: Duration, jitterPercent: Int) {
        self.interval = interval
        self.jitterPercent = min(max(jitterPercent, 0), 50)
    }

    public func firstDelay(using rng: inout some RandomNumberGenerator) -> Duration {
        let ms = max(1, interval.milliseconds)
        return .milliseconds(Int64.random(in: 0..<ms, using: &rng))
    }

    public func nextDelay(using rng: inout some RandomNumberGenerator) -> Duration {
        let ms = interval.milliseconds
        let spread = ms * Int64(jitterPercent) / 100
        guard spread > 0 else { return interval }
        return .milliseconds(ms + Int64.random(in: -spread...spread, using: &rng))
    }
}
