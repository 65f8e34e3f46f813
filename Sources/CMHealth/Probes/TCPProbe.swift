import CMTypes
import Glibc
import NIOCore
import NIOPosix

/// TCP checks: connect, and close as soon as the connection is established.
///
/// Why SwiftNIO rather than an epoll thread of our own: the daemon already runs NIO event
/// loops (CMWire), NIO's connect is non-blocking with its timeout scheduled on the same
/// loop, and a connect costs one Channel and a few futures — at 1,000 probes a second that
/// is a few per cent of one core, with no thread per probe and no code of our own to get
/// subtly wrong (EINPROGRESS, SO_ERROR, EINTR, timer bookkeeping).
///
/// Why close with SO_LINGER 0 (an RST) rather than a plain close: the side that closes
/// first keeps the connection in TIME_WAIT for 60 s. At 1,000 probes a second that is
/// 60,000 sockets and, towards each node port, a growing share of the ephemeral port
/// range. An RST leaves nothing behind on either side. The price is an "connection reset
/// by peer" line in some servers' logs; HAProxy's health checks make the same choice.
public struct TCPProber: Sendable {
    public let group: any EventLoopGroup

    /// `group` is shared with the rest of the daemon; the prober starts no threads.
    public init(group: any EventLoopGroup) {
        self.group = group
    }

    /// "connected in 0.3 ms", "connect: Connection refused", "timeout after 1s".
    public func probe(_ address: IPv4Address, port: UInt16, timeout: Duration) async -> ProbeResult {
        (try? await start(address, port: port, timeout: timeout, on: group.next()).get())
            ?? ProbeResult(ok: false, message: "connect: shutting down", latency: .zero)
    }

    /// The same, on `loop`, without a task: the future completes on `loop` and never fails.
    public func start(_ address: IPv4Address, port: UInt16, timeout: Duration, on loop: any EventLoop) -> EventLoopFuture<ProbeResult> {
        let start = ContinuousClock.now
        let sa = IPv4Endpoint(address: address, port: port).sockaddrIn
        // The host string only names the address in NIO's descriptions; no resolving.
        let target = SocketAddress(sa, host: address.description)
        return ClientBootstrap(group: loop)
            .connectTimeout(.nanoseconds(max(1, clampedNanoseconds(timeout))))
            .channelInitializer { channel in
                // Set before the connect, so the close below always resets.
                guard let options = channel as? any SocketOptionProvider else { return channel.eventLoop.makeSucceededVoidFuture() }
                return options.setSoLinger(linger(l_onoff: 1, l_linger: 0))
            }
            .connect(to: target)
            .map { channel in
                let elapsed = ContinuousClock.now - start
                channel.close(promise: nil)
                return ProbeResult(ok: true, message: "connected in \(milliText(elapsed))", latency: elapsed)
            }
            .recover { error in
                let latency = ContinuousClock.now - start
                switch error {
                case ChannelError.connectTimeout: return ProbeResult(ok: false, message: timeoutText(timeout), latency: latency)
                case let error as IOError: return ProbeResult(ok: false, message: "connect: \(String(cString: strerror(error.errnoCode)))", latency: latency)
                default: return ProbeResult(ok: false, message: "connect: \(error)", latency: latency)
                }
            }
    }
}
