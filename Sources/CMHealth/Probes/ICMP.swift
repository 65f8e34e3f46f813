import CMTypes
import Foundation
import Synchronization

/// ICMP echo request/reply (RFC 792), as a value type with no I/O.
public struct ICMPEcho: Sendable, Equatable {
    public var type: UInt8
    public var code: UInt8
    public var identifier: UInt16
    public var sequence: UInt16
    public var payload: [UInt8]

    public static let request: UInt8 = 8
    public static let reply: UInt8 = 0

    public init(type: UInt8, code: UInt8 = 0, identifier: UInt16, sequence: UInt16, payload: [UInt8]) {
        self.type = type
        self.code = code
        self.identifier = identifier
        self.sequence = sequence
        self.payload = payload
    }

    public enum ParseError: Error, Equatable { case tooShort(Int), badChecksum, notEcho(UInt8) }

    /// Parses an ICMP message (no IP header). Only echo request/reply are accepted.
    public init(parsing bytes: ArraySlice<UInt8>) throws(ParseError) {
        guard bytes.count >= 8 else { throw .tooShort(bytes.count) }
        let b = Array(bytes)
        guard Self.checksum(b) == 0 else { throw .badChecksum }
        guard b[0] == Self.request || b[0] == Self.reply else { throw .notEcho(b[0]) }
        type = b[0]
        code = b[1]
        identifier = UInt16(b[4]) << 8 | UInt16(b[5])
        sequence = UInt16(b[6]) << 8 | UInt16(b[7])
        payload = Array(b[8...])
    }

    public func serialize() -> [UInt8] {
        var b: [UInt8] = [type, code, 0, 0, UInt8(identifier >> 8), UInt8(identifier & 0xff), UInt8(sequence >> 8), UInt8(sequence & 0xff)]
        b += payload
        let sum = Self.checksum(b)
        b[2] = UInt8(sum >> 8)
        b[3] = UInt8(sum & 0xff)
        return b
    }

    /// The Internet checksum (RFC 1071): ones' complement of the ones' complement sum.
    public static func checksum(_ bytes: [UInt8]) -> UInt16 {
        var sum: UInt32 = 0
        var i = 0
        while i + 1 < bytes.count {
            sum += UInt32(bytes[i]) << 8 | UInt32(bytes[i + 1])
            i += 2
        }
        if i < bytes.count { sum += UInt32(bytes[i]) << 8 }
        while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
        return ~UInt16(sum)
    }
}

/// Pings for every icmp check through one socket and one receive thread. Prefers an
/// unprivileged ICMP datagram socket (allowed when the group is in net.ipv4.ping_group_range)
/// and falls back to a raw socket (CAP_NET_RAW).
public final class ICMPEngine: Sendable {
    struct Pending {
        var address: UInt32
        var sent: ContinuousClock.Instant
        var deadline: ContinuousClock.Instant
        var timeout: Duration
        var continuation: CheckedContinuation<ProbeResult, Never>
    }

    struct State {
        var nextSequence: UInt16 = 1
        var pending: [UInt16: Pending] = [:]
        var stopping = false
    }

    public enum SocketError: Error, CustomStringConvertible {
        case unavailable(String)
        public var description: String {
            switch self { case .unavailable(let s): return s }
        }
    }

    let fd: Int32
    let raw: Bool
    let identifier: UInt16
    private let state = Mutex(State())

    public init() throws {
        var fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), Int32(IPPROTO_ICMP))
        var raw = false
        if fd < 0 {
            let dgramError = String(cString: strerror(errno))
            fd = socket(AF_INET, Int32(SOCK_RAW.rawValue), Int32(IPPROTO_ICMP))
            raw = true
            if fd < 0 {
                throw SocketError.unavailable("ICMP datagram socket: \(dgramError) (net.ipv4.ping_group_range); raw socket: \(String(cString: strerror(errno))) (needs CAP_NET_RAW)")
            }
        }
        var tv = timeval(tv_sec: 0, tv_usec: 20_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        self.fd = fd
        self.raw = raw
        self.identifier = UInt16(truncatingIfNeeded: getpid())
        let thread = Thread { [self] in receiveLoop() }
        thread.name = "cm-icmp"
        thread.start()
    }

    public func shutdown() {
        let pending = state.withLock { s -> [Pending] in
            s.stopping = true
            defer { s.pending.removeAll() }
            return Array(s.pending.values)
        }
        for p in pending { p.continuation.resume(returning: ProbeResult(ok: false, message: "shutting down", latency: .zero)) }
    }

    public func ping(_ address: IPv4Address, timeout: Duration) async -> ProbeResult {
        await withCheckedContinuation { continuation in
            let now = ContinuousClock.now
            let sequence: UInt16? = state.withLock { s in
                guard !s.stopping, s.pending.count < 60_000 else { return nil }
                var seq = s.nextSequence
                while s.pending[seq] != nil { seq &+= 1 }
                s.nextSequence = seq &+ 1
                s.pending[seq] = Pending(address: address.rawValue, sent: now, deadline: now + timeout, timeout: timeout, continuation: continuation)
                return seq
            }
            guard let sequence else {
                continuation.resume(returning: ProbeResult(ok: false, message: "icmp: too many pings in flight", latency: .zero))
                return
            }
            let packet = ICMPEcho(type: ICMPEcho.request, identifier: identifier, sequence: sequence, payload: Array("cm-healthd".utf8)).serialize()
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_addr.s_addr = address.rawValue.bigEndian
            let sent = withUnsafePointer(to: &sa) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, packet, packet.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            if sent < 0 {
                let reason = String(cString: strerror(errno))
                if let p = state.withLock({ $0.pending.removeValue(forKey: sequence) }) {
                    p.continuation.resume(returning: ProbeResult(ok: false, message: "icmp send: \(reason)", latency: .zero))
                }
            }
        }
    }

    private func receiveLoop() {
        var buffer = [UInt8](repeating: 0, count: 2048)
        while true {
            var from = sockaddr_in()
            var fromLength = socklen_t(MemoryLayout<sockaddr_in>.size)
            let n = withUnsafeMutablePointer(to: &from) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, &buffer, buffer.count, 0, $0, &fromLength) }
            }
            let now = ContinuousClock.now
            if n > 0 { deliver(buffer[0..<n], from: UInt32(bigEndian: from.sin_addr.s_addr), at: now) }
            let (expired, stopping) = state.withLock { s -> ([Pending], Bool) in
                let late = s.pending.filter { $0.value.deadline <= now }
                for key in late.keys { s.pending[key] = nil }
                return (Array(late.values), s.stopping)
            }
            for p in expired {
                p.continuation.resume(returning: ProbeResult(ok: false, message: "timeout after \(DurationText.format(p.timeout))", latency: p.timeout))
            }
            if stopping {
                close(fd)
                return
            }
        }
    }

    private func deliver(_ bytes: ArraySlice<UInt8>, from address: UInt32, at now: ContinuousClock.Instant) {
        var icmp = bytes
        if raw {
            // Raw sockets hand over the IP header too; its length is in the low nibble.
            guard let first = bytes.first else { return }
            let ihl = Int(first & 0x0f) * 4
            guard ihl >= 20, bytes.count >= ihl + 8 else { return }
            icmp = bytes.dropFirst(ihl)
        }
        guard let echo = try? ICMPEcho(parsing: icmp), echo.type == ICMPEcho.reply else { return }
        // Datagram ICMP sockets rewrite the identifier to the socket's own; they only deliver
        // our replies anyway. Raw sockets see every reply on the host: check it.
        if raw, echo.identifier != identifier { return }
        let p = state.withLock { s -> Pending? in
            guard let p = s.pending[echo.sequence], p.address == address else { return nil }
            s.pending[echo.sequence] = nil
            return p
        }
        guard let p else { return }
        let rtt = now - p.sent
        p.continuation.resume(returning: ProbeResult(ok: true, message: "echo reply in \(String(format: "%.2f", rtt.seconds * 1000)) ms", latency: rtt))
    }
}
