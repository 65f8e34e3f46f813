import CMTypes
import Foundation
import Glibc
import NIOCore
import NIOPosix

public struct ICMPPingerError: Error, CustomStringConvertible {
    public var description: String
}

/// ICMP echo checks: one socket and one NIO channel for every ping of the daemon.
///
/// The socket is an unprivileged ICMP datagram socket when the daemon's group lies inside
/// net.ipv4.ping_group_range, else a raw socket (CAP_NET_RAW). The two differ in what they
/// receive, which `PingHandler` deals with:
/// - datagram: the ICMP message alone, and only replies to this socket — the kernel sets
///   the identifier to the socket's own port on the way out and demultiplexes replies by
///   it, so the identifier we chose is gone; replies are matched by sequence and source.
/// - raw: the IP header first, and every ICMP message the host receives: replies are also
///   matched by our identifier, and ICMP_FILTER keeps everything but echo replies out.
/// Each echo carries a random per-pinger nonce and a per-ping token in its payload, so a
/// reply to another program's ping, or one arriving after its sequence number was reused,
/// cannot pass for ours.
///
/// State lives in the channel handler on one event loop: no locks, and timeouts are that
/// loop's scheduled tasks.
public final class ICMPPinger: Sendable {
    public enum SocketKind: String, Sendable, CaseIterable {
        case datagram, raw
    }

    public let kind: SocketKind
    /// Registering an existing socket with NIO cannot meaningfully fail, so `init` does
    /// not wait for it: pings wait for the channel instead.
    private let channel: EventLoopFuture<any Channel>

    /// Opens the first socket kind of `kinds` that this process may open; the error says
    /// why each failed: "ICMP datagram socket: Permission denied (gid 0 not in
    /// net.ipv4.ping_group_range "1 0"); raw socket: Operation not permitted (needs CAP_NET_RAW)".
    public init(group: any EventLoopGroup, kinds: [SocketKind] = SocketKind.allCases) throws(ICMPPingerError) {
        var reasons: [String] = []
        for kind in kinds {
            let type = kind == .datagram ? SOCK_DGRAM : SOCK_RAW
            let fd = socket(AF_INET, Int32(type.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Int32(IPPROTO_ICMP))
            guard fd >= 0 else {
                let why = String(cString: strerror(errno))
                reasons.append(kind == .datagram
                    ? "ICMP datagram socket: \(why) (gid \(getgid()) not in net.ipv4.ping_group_range \"\(Self.pingGroupRange() ?? "?")\")"
                    : "raw socket: \(why) (needs CAP_NET_RAW)")
                continue
            }
            if kind == .raw { Self.filterEchoReplies(fd) }
            let identifier = UInt16.random(in: 1...UInt16.max)
            let nonce = (0..<8).map { _ in UInt8.random(in: 0...255) }
            self.kind = kind
            // NIO owns the descriptor from here on and closes it with the channel.
            channel = DatagramBootstrap(group: group)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(PingHandler(raw: kind == .raw, identifier: identifier, nonce: nonce))
                    }
                }
                .withBoundSocket(fd)
            return
        }
        throw ICMPPingerError(description: reasons.isEmpty ? "no ICMP socket kind to try" : reasons.joined(separator: "; "))
    }

    deinit {
        channel.whenSuccess { $0.close(promise: nil) }
    }

    /// "echo reply in 0.1 ms", "timeout after 1s", "icmp send: Network is unreachable".
    public func ping(_ address: IPv4Address, timeout: Duration) async -> ProbeResult {
        (try? await start(address, timeout: timeout).get()) ?? ProbeResult(ok: false, message: "icmp: pinger shut down", latency: .zero)
    }

    /// The same without a task: the future (on the pinger's loop) never fails.
    public func start(_ address: IPv4Address, timeout: Duration) -> EventLoopFuture<ProbeResult> {
        let result = channel.eventLoop.makePromise(of: ProbeResult.self)
        let request = PingHandler.Request(address: address, timeout: timeout, result: result)
        channel.whenComplete { opened in
            switch opened {
            case .success(let channel):
                // If the channel is closed, the write never reaches the handler: answer here.
                channel.writeAndFlush(request).whenFailure { _ in
                    result.succeed(ProbeResult(ok: false, message: "icmp: pinger shut down", latency: .zero))
                }
            case .failure(let error):
                result.succeed(ProbeResult(ok: false, message: "icmp: \(error)", latency: .zero))
            }
        }
        return result.futureResult
    }

    /// Closes the socket; pings in flight end with "icmp: pinger shut down".
    public func shutdown() async {
        try? await channel.flatMap { $0.close() }.get()
    }

    static func pingGroupRange() -> String? {
        (try? String(contentsOfFile: "/proc/sys/net/ipv4/ping_group_range", encoding: .utf8))?
            .split(whereSeparator: \.isWhitespace).joined(separator: " ")
    }

    /// ICMP_FILTER (linux/icmp.h, level SOL_RAW): a bit set per ICMP type to drop. Only echo
    /// replies pass, so a busy host's other ICMP traffic never wakes the event loop.
    /// Not in Swift's Glibc module, hence the numbers; failure only costs wake-ups.
    private static func filterEchoReplies(_ fd: Int32) {
        let solRaw: Int32 = 255, icmpFilter: Int32 = 1
        var blocked: UInt32 = ~(UInt32(1) << UInt32(ICMPEcho.Kind.echoReply.rawValue))
        _ = setsockopt(fd, solRaw, icmpFilter, &blocked, socklen_t(MemoryLayout<UInt32>.size))
    }
}

/// Which sequence numbers are waiting for a reply, and from where. Pure: the handler
/// owns one and tests drive it directly.
struct PingTable<Waiter> {
    struct Entry {
        var address: IPv4Address
        var token: UInt64
        var waiter: Waiter
    }

    private(set) var entries: [UInt16: Entry] = [:]
    private var nextSequence: UInt16 = 0
    private var nextToken: UInt64 = 0
    /// Leaves room in the 16-bit sequence space so that allocation always terminates fast.
    let capacity: Int

    init(capacity: Int = 60_000) {
        self.capacity = min(max(1, capacity), 65_000)
    }

    /// A free sequence number and a fresh token for a ping to `address`; nil when full.
    mutating func add(_ address: IPv4Address, waiter: Waiter) -> (sequence: UInt16, token: UInt64)? {
        guard entries.count < capacity else { return nil }
        var sequence = nextSequence
        while entries[sequence] != nil { sequence &+= 1 }
        nextSequence = sequence &+ 1
        nextToken &+= 1
        entries[sequence] = Entry(address: address, token: nextToken, waiter: waiter)
        return (sequence, nextToken)
    }

    /// The entry a reply answers, removed; nil when the reply is not ours or too late.
    mutating func match(sequence: UInt16, token: UInt64, from source: IPv4Address) -> Entry? {
        guard let e = entries[sequence], e.token == token, e.address == source else { return nil }
        entries[sequence] = nil
        return e
    }

    /// Removes a ping that timed out or failed; the token makes sure it is that ping.
    mutating func remove(sequence: UInt16, token: UInt64) -> Entry? {
        guard let e = entries[sequence], e.token == token else { return nil }
        entries[sequence] = nil
        return e
    }

    mutating func removeAll() -> [Entry] {
        defer { entries.removeAll() }
        return Array(entries.values)
    }
}

/// The pinger's channel handler: sends echo requests written to the channel as `Request`s
/// and answers each request's promise with the reply, a timeout or a send error.
final class PingHandler: ChannelDuplexHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundIn = Request
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    struct Request: Sendable {
        var address: IPv4Address
        var timeout: Duration
        var result: EventLoopPromise<ProbeResult>
    }

    struct Waiter {
        var sent: NIODeadline
        var timeout: Duration
        var timer: Scheduled<Void>?
        var result: EventLoopPromise<ProbeResult>
    }

    let raw: Bool
    let identifier: UInt16
    let nonce: [UInt8]
    var table = PingTable<Waiter>()
    /// Packets that were not replies of ours (malformed, foreign, late).
    private(set) var dropped = 0

    init(raw: Bool, identifier: UInt16, nonce: [UInt8]) {
        self.raw = raw
        self.identifier = identifier
        self.nonce = nonce
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        promise?.succeed()  // the request is ours now; its outcome goes to request.result
        let now = NIODeadline.now()
        let waiter = Waiter(sent: now, timeout: request.timeout, timer: nil, result: request.result)
        guard let (sequence, token) = table.add(request.address, waiter: waiter) else {
            request.result.succeed(ProbeResult(ok: false, message: "icmp: too many pings in flight", latency: .zero))
            return
        }
        // A day bounds the deadline arithmetic; no check waits that long.
        let nanos = min(clampedNanoseconds(request.timeout), 86_400_000_000_000)
        let timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: now + .nanoseconds(nanos)) { [self] in
            guard let e = table.remove(sequence: sequence, token: token) else { return }
            e.waiter.result.succeed(ProbeResult(ok: false, message: timeoutText(e.waiter.timeout), latency: e.waiter.timeout))
        }
        table.setTimer(timer, for: sequence)

        var payload = nonce
        withUnsafeBytes(of: token.bigEndian) { payload.append(contentsOf: $0) }
        var buffer = context.channel.allocator.buffer(capacity: ICMPEcho.headerLength + payload.count)
        ICMPEcho(kind: .echoRequest, identifier: identifier, sequence: sequence, payload: payload).serialize(into: &buffer)
        let sa = IPv4Endpoint(address: request.address, port: 0).sockaddrIn
        let envelope = AddressedEnvelope(remoteAddress: SocketAddress(sa, host: request.address.description), data: buffer)
        let sent = context.eventLoop.makePromise(of: Void.self)
        sent.futureResult.assumeIsolated().whenFailure { [self] error in
            guard let e = table.remove(sequence: sequence, token: token) else { return }
            e.waiter.timer?.cancel()
            let why = (error as? IOError).map { String(cString: strerror($0.errnoCode)) } ?? "\(error)"
            e.waiter.result.succeed(ProbeResult(ok: false, message: "icmp send: \(why)", latency: .zero))
        }
        context.writeAndFlush(wrapOutboundOut(envelope), promise: sent)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let now = NIODeadline.now()
        let envelope = unwrapInboundIn(data)
        guard case .v4(let from) = envelope.remoteAddress else { return drop() }
        let source = IPv4Address(rawValue: UInt32(bigEndian: from.address.sin_addr.s_addr))
        var buffer = envelope.data
        if raw {
            guard let ip = try? IPv4Header(parsing: &buffer), ip.protocol == IPv4Header.icmp else { return drop() }
        }
        guard let echo = try? ICMPEcho(parsing: &buffer), echo.kind == .echoReply else { return drop() }
        // A datagram socket's replies carry the identifier the kernel chose, not ours.
        if raw, echo.identifier != identifier { return drop() }
        guard echo.payload.count == nonce.count + 8, echo.payload.starts(with: nonce) else { return drop() }
        let token = echo.payload[nonce.count...].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        guard let e = table.match(sequence: echo.sequence, token: token, from: source) else { return drop() }
        e.waiter.timer?.cancel()
        let rtt = Duration.nanoseconds((now - e.waiter.sent).nanoseconds)
        e.waiter.result.succeed(ProbeResult(ok: true, message: "echo reply in \(milliText(rtt))", latency: rtt))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A read error on an ICMP socket (an ICMP error queued for it) concerns one ping,
        // which then times out; the socket stays open for all the others.
    }

    func channelInactive(context: ChannelHandlerContext) {
        for e in table.removeAll() {
            e.waiter.timer?.cancel()
            e.waiter.result.succeed(ProbeResult(ok: false, message: "icmp: pinger shut down", latency: .zero))
        }
        context.fireChannelInactive()
    }

    private func drop() { dropped += 1 }
}

extension PingTable where Waiter == PingHandler.Waiter {
    mutating func setTimer(_ timer: Scheduled<Void>, for sequence: UInt16) {
        entries[sequence]?.waiter.timer = timer
    }
}
