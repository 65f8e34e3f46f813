import CLinux
import CMConfig
import CMTypes
import Foundation
import Glibc
import Synchronization

/// One thread and its epoll set.
final class L4Loop: @unchecked Sendable {
    enum Command {
        case addListener(L4Listener)
        case removeListener(Int32, done: @Sendable () -> Void)
        case resumeAccepting
        /// A connection another loop accepted for this one.
        case adopt(Int32, SocketAddressV4, FrontendRuntime)
        /// A TCP pair another loop hands over (its client's packets arrive on this loop's CPU).
        case move(L4Pair)
        /// The daemon stops: HTTP connections finish their request and close.
        case quiesce
        case stop(done: @Sendable () -> Void)
    }

    let index: Int
    /// The CPU the thread runs on; nil: wherever the scheduler puts it.
    let cpu: Int?
    /// Why pinning to `cpu` failed (an errno), 0 when it did not.
    private(set) var pinError: Int32 = 0
    /// Signalled when the thread runs (pinned or not).
    let running = DispatchSemaphore(value: 0)
    let epfd: Int32
    let wakeFD: Int32
    /// Set once after init, before the thread starts.
    unowned(unsafe) var engine: L4Engine!
    private let commands = Mutex<[Command]>([])
    /// The eventfd was written and the loop has not read it yet: further commands need not
    /// write it again (one system call less for most connections handed over by `assign`).
    private let wakePending = Atomic<Bool>(false)
    /// Connections this loop owns or is about to (see `L4Engine.assign`).
    let load = Atomic<Int>(0)
    /// What a limiter calls when this loop may accept again: made once, not a closure
    /// allocated per accept.
    private(set) lazy var resumeAccepting: @Sendable () -> Void = { [unowned(unsafe) self] in self.send(.resumeAccepting) }

    // Owned by the loop's thread:
    /// The owner of each socket in the epoll set, by file descriptor.
    var handlers: [LoopHandler?] = []
    var listeners: [Int32: L4Listener] = [:]
    /// Listeners not watched while the engine is at max_connections.
    var paused: Set<Int32> = []
    var open: [ObjectIdentifier: LoopConnection] = [:]
    /// Idle keep-alive connections to servers of HTTP frontends.
    let upstreams = UpstreamPool()
    /// Where reads land before they are parsed (HTTP mode).
    let scratch = UnsafeMutableRawPointer.allocate(byteCount: L4Loop.scratchSize, alignment: 16)
    static let scratchSize = 32 * 1024
    var stopping = false
    /// Buffers of closed pairs, reused: no malloc and no fresh pages per connection.
    private var spareBuffers: [UnsafeMutableRawPointer] = []

    static let wakeTag: UInt64 = UInt64.max

    init(index: Int, cpu: Int?) throws(SystemError) {
        self.index = index
        self.cpu = cpu
        epfd = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard epfd >= 0 else { throw SystemError("epoll_create1") }
        wakeFD = eventfd(0, Int32(EFD_NONBLOCK) | Int32(EFD_CLOEXEC))
        guard wakeFD >= 0 else { throw SystemError("eventfd") }
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.u64 = Self.wakeTag
        epoll_ctl(epfd, EPOLL_CTL_ADD, wakeFD, &event)
    }

    deinit {
        events.deallocate()
        scratch.deallocate()
        Glibc.close(epfd)
        Glibc.close(wakeFD)
    }

    func start() {
        startThread(named: "lbd-loop-\(index)") { [self] in run() }
    }

    func send(_ command: Command) {
        commands.withLock { $0.append(command) }
        guard !wakePending.exchange(true, ordering: .sequentiallyConsistent) else { return }
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)
    }

    private func run() {
        if let cpu { pinError = CPUAffinity.pin(to: cpu) }
        running.signal()
        while poll(timeoutMs: 100) {}
    }

    private let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: 256)
    /// The time of this turn of the loop (ms, monotonic), read once after epoll_wait: what the
    /// connections stamp their activity with.
    private(set) var now = L4Clock.nowMs()
    private var lastSweep = L4Clock.nowMs()

    /// One turn of the loop: waits up to `timeoutMs` for events, handles them, and sweeps
    /// timeouts every 100 ms. False when the loop is to end. (Tests turn a loop that was not
    /// started by hand.)
    func poll(timeoutMs: Int32) -> Bool {
        let n = epoll_wait(epfd, events, 256, timeoutMs)
        if n < 0, errno != EINTR { return false }
        now = L4Clock.nowMs()
        for i in 0..<max(0, Int(n)) {
            let e = events[i]
            let tag = e.data.u64
            if tag == Self.wakeTag {
                var value: UInt64 = 0
                _ = read(wakeFD, &value, 8)
                // Cleared before the queue is taken: a command queued from here on either is
                // in that queue or writes the eventfd again.
                wakePending.store(false, ordering: .sequentiallyConsistent)
                if runCommands() { return false }
            } else if tag & L4Pair.listenerBit != 0 {
                accept(from: Int32(truncatingIfNeeded: tag & 0xffff_ffff))
            } else {
                let fd = Int32(truncatingIfNeeded: tag)
                if Int(fd) < handlers.count, let handler = handlers[Int(fd)] { handler.handle(fd: fd, events: e.events) }
            }
        }
        if now - lastSweep >= 100 {
            lastSweep = now
            sweep(now: now)
        }
        return true
    }

    /// Returns true when the loop is to end.
    private func runCommands() -> Bool {
        for command in commands.withLock({ q in defer { q.removeAll() }; return q }) {
            switch command {
            case .addListener(let l):
                listeners[l.fd] = l
                watch(l.fd)
            case .removeListener(let fd, let done):
                if listeners.removeValue(forKey: fd) != nil, !paused.contains(fd) { epoll_ctl(epfd, EPOLL_CTL_DEL, fd, nil) }
                paused.remove(fd)
                done()
            case .resumeAccepting:
                for fd in paused where listeners[fd] != nil { watch(fd) }
                paused.removeAll()
            case .adopt(let fd, let peer, let runtime):
                start(fd: fd, peer: peer, runtime: runtime)
            case .move(let pair):
                open[ObjectIdentifier(pair)] = pair
                pair.arrive(on: self)
            case .quiesce:
                for c in Array(open.values) { c.quiesce(now: now) }
                upstreams.closeAll()
            case .stop(let done):
                for c in Array(open.values) { c.close() }
                upstreams.closeAll()
                for fd in listeners.keys where !paused.contains(fd) { epoll_ctl(epfd, EPOLL_CTL_DEL, fd, nil) }
                listeners.removeAll()
                done()
                return true
            }
        }
        return false
    }

    private func watch(_ fd: Int32) {
        var event = epoll_event()
        event.events = EPOLLIN.rawValue | EPOLLEXCLUSIVE.rawValue
        event.data.u64 = L4Pair.listenerBit | UInt64(UInt32(bitPattern: fd))
        epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &event)
    }

    private func accept(from listenFD: Int32) {
        guard let listener = listeners[listenFD] else { return }
        let runtime = listener.runtime.current
        for _ in 0..<64 {
            guard engine.admit(self, frontend: runtime.limiter) else {
                // At max_connections, the frontend's or the global one: stop watching until a
                // connection closes. The clients wait in the listen queue; a frontend that is
                // full stops only its own listener.
                epoll_ctl(epfd, EPOLL_CTL_DEL, listenFD, nil)
                paused.insert(listenFD)
                return
            }
            // The client's address comes with the accept (no getpeername per connection).
            var peer = SocketAddressV4(address: sockaddr_in())
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let fd = withUnsafeMutablePointer(to: &peer.address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    accept4(listenFD, $0, &length, Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue))
                }
            }
            if fd < 0 {
                engine.released(runtime.limiter)
                return
            }
            let cpu = engine.byIncomingCPU ? L4Socket.incomingCPU(fd) : -1
            let target = engine.assign(from: self, incomingCPU: cpu)
            if target === self {
                start(fd: fd, peer: peer, runtime: runtime)
            } else {
                target.send(.adopt(fd, peer, runtime))
            }
        }
    }

    /// Takes on a client connection: a byte pump for TCP frontends, an HTTP session for HTTP ones.
    private func start(fd: Int32, peer: SocketAddressV4, runtime: FrontendRuntime) {
        switch runtime.config.mode {
        case .tcp:
            let pair = L4Pair(loop: self, clientFD: fd, peer: peer, runtime: runtime)
            register(pair, fd: fd, writable: false)
            open[ObjectIdentifier(pair)] = pair
            pair.start()
        case .http:
            // The session puts its socket in the epoll set when it first waits for the client.
            let session = H1Session(loop: self, clientFD: fd, peer: peer, runtime: runtime)
            open[ObjectIdentifier(session)] = session
            session.start()
        }
    }

    /// Watches `fd` for `handler`, edge-triggered: readable and hung up, and writable unless
    /// `writable` is false (then `watchWritable` asks for it when a write first would block:
    /// a client that reads its answers at once never costs the epoll_ctl).
    func register(_ handler: LoopHandler, fd: Int32, writable: Bool = true) {
        if Int(fd) >= handlers.count { handlers.append(contentsOf: repeatElement(nil, count: Int(fd) + 1024 - handlers.count)) }
        handlers[Int(fd)] = handler
        var event = epoll_event()
        event.events = EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLET.rawValue | (writable ? EPOLLOUT.rawValue : 0)
        event.data.u64 = UInt64(UInt32(bitPattern: fd))
        epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &event)
    }

    /// Adds writability to what `fd` is watched for.
    func watchWritable(_ fd: Int32) {
        var event = epoll_event()
        event.events = EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLET.rawValue | EPOLLOUT.rawValue
        event.data.u64 = UInt64(UInt32(bitPattern: fd))
        epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &event)
    }

    func unregister(fd: Int32) {
        if Int(fd) < handlers.count { handlers[Int(fd)] = nil }
        // close(2) removes it from the epoll set.
    }

    func takeBuffer() -> UnsafeMutableRawPointer {
        spareBuffers.popLast() ?? UnsafeMutableRawPointer.allocate(byteCount: L4Pair.bufferSize, alignment: 16)
    }

    func returnBuffer(_ buffer: UnsafeMutableRawPointer) {
        if spareBuffers.count < 1024 {
            spareBuffers.append(buffer)
        } else {
            buffer.deallocate()
        }
    }

    func closed(_ connection: LoopConnection) {
        if open.removeValue(forKey: ObjectIdentifier(connection)) != nil {
            load.subtract(1, ordering: .relaxed)
            engine.released(connection.runtime.limiter)
        }
    }

    private func sweep(now: UInt64) {
        for c in Array(open.values) { c.checkTimeouts(now: now) }
        upstreams.sweep(now: now)
        if engine.byIncomingCPU, let cpu { moveToTheirCPUs(from: cpu) }
    }

    /// Where the next sweep's look at SO_INCOMING_CPU starts in `open`.
    private var moveCursor = 0

    /// Hands idle TCP pairs whose client's packets now arrive on another loop's CPU to that loop
    /// (within `skew`), as `choose` would have placed them: a client's CPU at connect time is not
    /// where it stays (on loopback the client's thread moves; a NIC's flow can be steered
    /// anew). Looks at up to 256 connections per sweep, going round.
    private func moveToTheirCPUs(from cpu: Int) {
        let all = Array(open.values)
        guard !all.isEmpty else { return }
        let start = moveCursor % all.count
        moveCursor = start + 256
        for k in 0..<min(all.count, 256) {
            guard let pair = all[(start + k) % all.count] as? L4Pair, pair.canMove else { continue }
            let incoming = L4Socket.incomingCPU(pair.clientFD)
            guard incoming >= 0, Int(incoming) != cpu else { continue }
            let loops = engine.loops
            let loads = loops.map { $0.load.load(ordering: .relaxed) }
            guard let t = L4Engine.local(to: incoming, loads: loads, cpus: loops.map(\.cpu)) else { continue }
            hand(pair, to: loops[t])
        }
    }

    /// Gives `pair` to `target`: out of this loop's epoll set and books now, into the target's
    /// when it takes its commands.
    func hand(_ pair: L4Pair, to target: L4Loop) {
        pair.leave()
        open.removeValue(forKey: ObjectIdentifier(pair))
        load.subtract(1, ordering: .relaxed)
        target.load.add(1, ordering: .relaxed)
        target.send(.move(pair))
    }
}
