import CLinux
import CMTypes
import Glibc
import NIOCore
import Synchronization

/// TCP checks: connect, and close as soon as the connection is established.
///
/// Why a thread of its own with a bare epoll and not SwiftNIO: a NIO connect builds a
/// Channel, a pipeline and a chain of futures for a socket that lives a millisecond.
/// bench-healthd measured 2,000 TCP checks a second at 2.96× HAProxy's CPU that way
/// (docs/benchmarks.md), most of it in that plumbing; what a check needs is socket,
/// connect, one writable event, SO_ERROR and close — HAProxy's way too. One thread serves
/// every connect: requests come through a locked queue and an eventfd, results leave through
/// each request's completion.
///
/// Why close with SO_LINGER 0 (an RST) rather than a plain close: the side that closes
/// first keeps the connection in TIME_WAIT for 60 s. At 1,000 probes a second that is
/// 60,000 sockets and, towards each node port, a growing share of the ephemeral port
/// range. An RST leaves nothing behind on either side. The price is an "connection reset
/// by peer" line in some servers' logs; HAProxy's health checks make the same choice.
public final class TCPProber: Sendable {
    /// Where `probe` completes (its caller awaits; the loop it uses does not matter).
    public let group: any EventLoopGroup
    private let core: Core

    /// Starts the prober's thread.
    public init(group: any EventLoopGroup) throws(SystemError) {
        self.group = group
        let epfd = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard epfd >= 0 else { throw SystemError("epoll_create1") }
        let wake = eventfd(0, Int32(EFD_NONBLOCK) | Int32(EFD_CLOEXEC))
        guard wake >= 0 else {
            let error = SystemError("eventfd")
            close(epfd)
            throw error
        }
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.fd = wake
        epoll_ctl(epfd, EPOLL_CTL_ADD, wake, &event)
        core = Core(epfd: epfd, wake: wake)
        let core = core
        startThread(named: "cm-tcp") { core.run() }
    }

    deinit { core.shutdown() }

    /// Ends the thread; connects in flight and later ones fail with "shutting down".
    public func shutdown() { core.shutdown() }

    /// "connected in 0.3 ms", "connect: Connection refused", "timeout after 1s".
    public func probe(_ address: IPv4Address, port: UInt16, timeout: Duration) async -> ProbeResult {
        (try? await start(address, port: port, timeout: timeout, on: group.next()).get())
            ?? ProbeResult(ok: false, message: "connect: shutting down", latency: .zero)
    }

    /// The same without a task: the future completes on `loop` and never fails.
    public func start(_ address: IPv4Address, port: UInt16, timeout: Duration, on loop: any EventLoop) -> EventLoopFuture<ProbeResult> {
        let promise = loop.makePromise(of: ProbeResult.self)
        core.submit(Request(endpoint: IPv4Endpoint(address: address, port: port), timeout: timeout) { promise.succeed($0) })
        return promise.futureResult
    }
}

extension TCPProber {
    struct Request: Sendable {
        let endpoint: IPv4Endpoint
        let timeout: Duration
        let done: @Sendable (ProbeResult) -> Void
    }

    struct Queue {
        var submitted: [Request] = []
        var stopping = false
    }

    /// A connect under way: the thread's own.
    struct Connecting {
        let request: Request
        let started: ContinuousClock.Instant
    }

    final class Core: Sendable {
        let epfd: Int32
        let wake: Int32
        let queue = Mutex(Queue())

        init(epfd: Int32, wake: Int32) {
            self.epfd = epfd
            self.wake = wake
        }

        /// Closed only when neither the prober nor its thread holds the core: a late wake-up
        /// never writes to a closed or reused descriptor.
        deinit {
            close(epfd)
            close(wake)
        }

        func submit(_ r: Request) {
            let first: Bool? = queue.withLock { q in
                if q.stopping { return nil }
                q.submitted.append(r)
                return q.submitted.count == 1
            }
            switch first {
            case nil: r.done(ProbeResult(ok: false, message: "connect: shutting down", latency: .zero))
            case true?: signal()
            case false?: break  // the thread takes the whole queue on the wake-up already sent
            }
        }

        func shutdown() {
            let first = queue.withLock { q in
                defer { q.stopping = true }
                return !q.stopping
            }
            if first { signal() }
        }

        private func signal() {
            var one: UInt64 = 1
            _ = write(wake, &one, 8)
        }

        // MARK: The thread

        func run() {
            var connecting: [Int32: Connecting] = [:]
            var deadlines = ProbeTimetable<Int32>()
            var batch: [Request] = []
            let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: 256)
            defer { events.deallocate() }
            func finish(_ fd: Int32, _ c: Connecting, _ result: ProbeResult) {
                close(fd)  // SO_LINGER 0: an RST, nothing left in TIME_WAIT
                c.request.done(result)
            }
            while true {
                let stopping = queue.withLock { q in
                    swap(&q.submitted, &batch)
                    return q.stopping
                }
                if stopping {
                    for r in batch { r.done(ProbeResult(ok: false, message: "connect: shutting down", latency: .zero)) }
                    for (fd, c) in connecting { finish(fd, c, ProbeResult(ok: false, message: "connect: shutting down", latency: ContinuousClock.now - c.started)) }
                    return
                }
                for r in batch {
                    let started = ContinuousClock.now
                    switch Self.connect(r.endpoint) {
                    case .failed(let message):
                        r.done(ProbeResult(ok: false, message: message, latency: ContinuousClock.now - started))
                    case .connected(let fd):
                        finish(fd, Connecting(request: r, started: started), Self.connected(since: started))
                    case .inProgress(let fd):
                        var event = epoll_event()
                        event.events = EPOLLOUT.rawValue
                        event.data.fd = fd
                        epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &event)
                        connecting[fd] = Connecting(request: r, started: started)
                        deadlines.schedule(fd, at: Self.now() + clampedNanoseconds(r.timeout))
                    }
                }
                batch.removeAll(keepingCapacity: true)

                // Sleep until an event, a wake-up or the nearest deadline (rounded up to the
                // millisecond, so a timeout is never reported early).
                var timeoutMs: Int32 = -1
                if let due = deadlines.nextDue() {
                    let left = due - Self.now()
                    timeoutMs = left <= 0 ? 0 : Int32(clamping: (left + 999_999) / 1_000_000)
                }
                let n = epoll_wait(epfd, events, 256, timeoutMs)
                for i in 0..<max(0, Int(n)) {
                    let fd = events[i].data.fd
                    if fd == wake {
                        var value: UInt64 = 0
                        _ = read(wake, &value, 8)
                        continue
                    }
                    guard let c = connecting.removeValue(forKey: fd) else { continue }
                    deadlines.remove(fd)
                    var error: Int32 = 0
                    var length = socklen_t(MemoryLayout<Int32>.size)
                    if getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0 { error = errno }
                    finish(fd, c, error == 0 ? Self.connected(since: c.started)
                        : ProbeResult(ok: false, message: "connect: \(String(cString: strerror(error)))", latency: ContinuousClock.now - c.started))
                }
                for (fd, _) in deadlines.popDue(now: Self.now()) {
                    guard let c = connecting.removeValue(forKey: fd) else { continue }
                    finish(fd, c, ProbeResult(ok: false, message: timeoutText(c.request.timeout), latency: ContinuousClock.now - c.started))
                }
            }
        }

        enum Connect { case failed(String), connected(Int32), inProgress(Int32) }

        /// A non-blocking socket that resets on close, and its connect begun.
        static func connect(_ endpoint: IPv4Endpoint) -> Connect {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { return .failed("connect: socket: \(String(cString: strerror(errno)))") }
            var l = linger(l_onoff: 1, l_linger: 0)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
            var sa = endpoint.sockaddrIn
            let rc = withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            if rc == 0 { return .connected(fd) }
            let error = errno
            if error == EINPROGRESS { return .inProgress(fd) }
            close(fd)
            return .failed("connect: \(String(cString: strerror(error)))")
        }

        static func connected(since started: ContinuousClock.Instant) -> ProbeResult {
            let elapsed = ContinuousClock.now - started
            return ProbeResult(ok: true, message: "connected in \(milliText(elapsed))", latency: elapsed)
        }

        /// The monotonic clock in nanoseconds: the deadlines' unit.
        static func now() -> Int64 { Int64(NIODeadline.now().uptimeNanoseconds) }
    }
}
