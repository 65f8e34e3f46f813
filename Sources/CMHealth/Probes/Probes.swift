import CMConfig
import CMTypes
import Foundation
import NIOCore
import NIOPosix

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

/// Runs probes of every kind through the shared probers of Probes/; one per daemon.
public final class ProbeEngine: Sendable {
    public let http: HTTPEngine
    let tcp: TCPProber
    let exec: ExecProber
    let icmp: ICMPPinger?
    let icmpError: String?

    public init(group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) throws {
        http = try HTTPEngine()
        tcp = try TCPProber(group: group)
        exec = try ExecProber()
        do {
            icmp = try ICMPPinger(group: group)
            icmpError = nil
        } catch {
            icmp = nil
            icmpError = error.description
        }
    }

    public func shutdown() {
        http.shutdown()
        tcp.shutdown()
        exec.shutdown()
        if let icmp { Task { await icmp.shutdown() } }
    }

    public func run(_ spec: ProbeSpec, timeout: Duration) async -> ProbeResult {
        (try? await start(spec, timeout: timeout, on: tcp.group.next()).get()) ?? ProbeResult(ok: false, message: "probe: shutting down", latency: .zero)
    }

    /// Starts one probe without a task (the probe loop's way): the future completes on
    /// `loop` and never fails; every failure is a result that is not ok.
    public func start(_ spec: ProbeSpec, timeout: Duration, on loop: any EventLoop) -> EventLoopFuture<ProbeResult> {
        switch spec {
        case .icmp(let address):
            guard let icmp else { return loop.makeSucceededFuture(ProbeResult(ok: false, message: "icmp unavailable: \(icmpError ?? "no socket")", latency: .zero)) }
            return icmp.start(address, timeout: timeout).hop(to: loop)
        case .tcp(let address, let port):
            guard let port = UInt16(exactly: port) else { return loop.makeSucceededFuture(ProbeResult(ok: false, message: "tcp: port \(port) out of range", latency: .zero)) }
            return tcp.start(address, port: port, timeout: timeout, on: loop)
        case .http(let url, let host, let tlsVerify, let expectStatus, let expectBody):
            let promise = loop.makePromise(of: ProbeResult.self)
            let expect = HTTPExpectation(statuses: expectStatus, body: expectBody)
            http.submit(HTTPProbeRequest(url: url, host: host, timeout: timeout, tlsVerify: tlsVerify)) { promise.succeed(expect.judge($0)) }
            return promise.futureResult
        case .exec(let argv):
            let promise = loop.makePromise(of: ProbeResult.self)
            exec.start(argv, timeout: timeout) { promise.succeed($0) }
            return promise.futureResult
        }
    }
}
