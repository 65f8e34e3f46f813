import CLinux
import CMConfig
import CMTypes
import Foundation
import Glibc
import Synchronization

/// cm-lbd's event loops: one thread per core on epoll(7), edge-triggered, each connection
/// owned by one loop, bytes moved with read(2)/write(2) through buffers that live as long as
/// the connection, no allocation per read. Every loop watches every frontend's listening
/// socket with EPOLLEXCLUSIVE, so the kernel hands each new connection to one idle loop.
/// TCP frontends' connections are `L4Pair`s, HTTP frontends' are `H1Session`s with pooled
/// server connections (`H1Upstream`) per loop.
///
/// SwiftNIO's channel pipeline cost more per read than the kernel does (docs/benchmarks.md
/// tells the story); HTTP mode uses SwiftNIO's HTTP/1 parser directly.
final class L4Engine: Sendable {
    let loops: [L4Loop]
    /// max_connections, shared with the HTTP frontends.
    let limiter: ConnectionLimiter
    private let active = Atomic<Int>(0)

    /// New connections go to the loop on the CPU that took their packets (`choose`).
    let byIncomingCPU: Bool

    /// With `pin`, loop i runs on the i-th CPU the process may use (wrapping around); with
    /// `incomingCPU` too, connections follow their CPU (`choose`). Without `start` no thread
    /// runs them (tests call `L4Loop.poll`).
    init(threads: Int, pin: Bool, incomingCPU: Bool = false, limiter: ConnectionLimiter, start: Bool = true) throws(SystemError) {
        self.limiter = limiter
        byIncomingCPU = pin && incomingCPU
        let cpus = pin ? CPUAffinity.allowed() : []
        var loops: [L4Loop] = []
        for i in 0..<threads { loops.append(try L4Loop(index: i, cpu: cpus.isEmpty ? nil : cpus[i % cpus.count])) }
        self.loops = loops
        for loop in loops { loop.engine = self }
        if start {
            loops.forEach { $0.start() }
            // Each thread pins itself first; wait, so that the daemon can say how that went.
            loops.forEach { $0.running.wait() }
        }
    }

    var activeConnections: Int { active.load(ordering: .relaxed) }

    /// Counts a new connection of `loop` for a frontend with limiter `frontend`; false at
    /// either limit, and the loop is told when it may accept again. The frontend's limit is
    /// asked first: a full frontend takes no slot of the global limit, even for a moment.
    func admit(_ loop: L4Loop, frontend: ConnectionLimiter) -> Bool {
        guard frontend.tryOpen(orWait: loop.resumeAccepting) else { return false }
        guard limiter.tryOpen(orWait: loop.resumeAccepting) else {
            frontend.closeOne()
            return false
        }
        active.add(1, ordering: .relaxed)
        return true
    }

    /// A connection counted by `admit` for `frontend` is closed.
    func released(_ frontend: ConnectionLimiter) {
        active.subtract(1, ordering: .relaxed)
        frontend.closeOne()
        limiter.closeOne()
    }

    /// The daemon stops: every HTTP connection closes after the response in progress (idle
    /// ones at once); TCP ones run to their end.
    func quiesce() { loops.forEach { $0.send(.quiesce) } }

    /// The loop a connection accepted by `acceptor` goes to (see `choose`), counted at once so
    /// that a burst of accepts spreads too. `incomingCPU`: the connection's SO_INCOMING_CPU,
    /// -1 when not asked.
    func assign(from acceptor: L4Loop, incomingCPU: Int32) -> L4Loop {
        let loads = loops.map { $0.load.load(ordering: .relaxed) }
        let i = Self.choose(acceptor: acceptor.index, loads: loads, cpus: loops.map(\.cpu), incomingCPU: incomingCPU)
        loops[i].load.add(1, ordering: .relaxed)
        return loops[i]
    }

    /// Which loop takes a new connection, by index.
    ///
    /// With `incomingCPU` known (`incoming_cpu`, pinned loops): the loop on the CPU that took the
    /// connection's packets. On loopback that is the CPU the client runs on, on a NIC the one its
    /// receive queue interrupts; either way the wake-ups between the client, the loop and the
    /// server stay on one CPU, in its caches and without an inter-processor interrupt (bench-lb,
    /// TCP keep-alive: 1.25 instead of 1.10 times HAProxy's rate, with `moveToTheirCPUs`). Not
    /// when that loop already has more than `skew` connections above the least loaded one:
    /// traffic that all arrives on one CPU must not leave the other loops idle.
    ///
    /// Otherwise: the acceptor, unless another loop has at least two fewer connections
    /// (EPOLLEXCLUSIVE wakes whichever loop is idle, which left one loop with two thirds of the
    /// keep-alive connections and twice the latency).
    static func choose(acceptor: Int, loads: [Int], cpus: [Int?], incomingCPU: Int32) -> Int {
        if let local = local(to: incomingCPU, loads: loads, cpus: cpus) { return local }
        var target = acceptor
        for (i, n) in loads.enumerated() where n + 1 < loads[target] { target = i }
        return target
    }

    /// The least loaded loop pinned to `cpu`, by index; nil when `cpu` is -1, no loop runs
    /// there, or that loop has more than `skew` connections above the least loaded one.
    static func local(to cpu: Int32, loads: [Int], cpus: [Int?]) -> Int? {
        guard cpu >= 0, let fewest = loads.min() else { return nil }
        let here = loads.indices.filter { cpus[$0] == Int(cpu) }.min { loads[$0] < loads[$1] }
        guard let here, loads[here] <= fewest + skew(fewest) else { return nil }
        return here
    }

    /// How many more connections than the least loaded loop the loop on a connection's own CPU
    /// may have and still take it: a quarter more, at least 8.
    static func skew(_ fewest: Int) -> Int { max(8, fewest / 4) }

    /// Starts accepting on `listener` in every loop.
    func add(_ listener: L4Listener) { loops.forEach { $0.send(.addListener(listener)) } }

    /// Stops accepting on `listener` in every loop and waits until they all did.
    func remove(_ listener: L4Listener) async {
        await withTaskGroup(of: Void.self) { group in
            for loop in loops {
                group.addTask { await withCheckedContinuation { c in loop.send(.removeListener(listener.fd, done: { c.resume() })) } }
            }
        }
    }

    /// Closes every connection and ends the threads.
    func shutdown() async {
        await withTaskGroup(of: Void.self) { group in
            for loop in loops {
                group.addTask { await withCheckedContinuation { c in loop.send(.stop(done: { c.resume() })) } }
            }
        }
    }
}

/// A frontend's listening socket, watched by every loop.
final class L4Listener: Sendable {
    let fd: Int32
    let runtime: RuntimeRef

    init(fd: Int32, runtime: FrontendRuntime) {
        self.fd = fd
        self.runtime = RuntimeRef(runtime)
    }

    /// Binds `endpoint` (the address need not exist yet) and listens.
    static func bind(_ endpoint: IPv4Endpoint) throws(SystemError) -> Int32 {
        try ListeningSocket.bind(endpoint)
    }

    /// An HTTP frontend's socket hands over a connection once the client's first bytes are in
    /// (TCP_DEFER_ACCEPT, nginx's `deferred`, HAProxy's `defer-accept`): the request is read
    /// with the accept and most sessions never wait for their client. A client that connects
    /// and sends nothing is handed over at the first SYN-ACK retransmission, about a second
    /// later. Off for TCP frontends: a server that speaks first would never be connected to.
    static func deferAccept(_ fd: Int32, _ on: Bool) {
        var seconds: Int32 = on ? 1 : 0
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_DEFER_ACCEPT, &seconds, 4)
    }

    /// A socket passed by systemd: non-blocking, listening.
    static func adopt(_ fd: Int32) -> Int32 {
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, 4)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        listen(fd, 4096)
        return fd
    }
}

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

/// Outgoing connections of both modes.
enum L4Socket {
    /// The CPU that took `fd`'s latest packets (SO_INCOMING_CPU), -1 when the kernel does not say.
    static func incomingCPU(_ fd: Int32) -> Int32 {
        var cpu: Int32 = -1
        var length = socklen_t(MemoryLayout<Int32>.size)
        return getsockopt(fd, SOL_SOCKET, SO_INCOMING_CPU, &cpu, &length) == 0 ? cpu : -1
    }

    /// A non-blocking TCP_NODELAY socket connecting to `server`: `done` when the connect
    /// completed at once; fd -1 and the errno when it failed at once.
    ///
    /// `dataReady`: bytes for the server are in hand and go out as soon as the connection is up.
    /// The kernel then leaves out the bare ACK that ends the handshake and the first data carries
    /// it (TCP_QUICKACK off before connect(2), as HAProxy's `option tcp-smart-connect`): one
    /// segment less, and the server finds the connection and its first bytes together. Without
    /// data in hand that ACK could wait up to 200 ms, which a server that speaks first would
    /// notice, so only then.
    static func connect(to server: IPv4Endpoint, dataReady: Bool) -> (fd: Int32, done: Bool, errno: Int32) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return (-1, false, errno) }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, 4)
        if dataReady {
            var zero: Int32 = 0
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_QUICKACK, &zero, 4)
        }
        var address = server.sockaddrIn
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0, errno != EINPROGRESS {
            let e = errno
            Glibc.close(fd)
            return (-1, false, e)
        }
        return (fd, rc == 0, 0)
    }

    /// How a non-blocking connect ended, from the socket's epoll events: nil while it goes on,
    /// 0 when connected, else the errno. Only an error or hang-up needs SO_ERROR asked (a
    /// clean connect costs no getsockopt).
    static func connectResult(_ fd: Int32, events: UInt32) -> Int32? {
        let bad = EPOLLERR.rawValue | EPOLLHUP.rawValue
        guard events & (EPOLLOUT.rawValue | bad) != 0 else { return nil }
        guard events & bad != 0 else { return 0 }
        var error: Int32 = 0
        var length = socklen_t(4)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
        return error != 0 ? error : ECONNREFUSED
    }
}

/// What a loop's epoll set points at: the owner of a socket.
protocol LoopHandler: AnyObject {
    func handle(fd: Int32, events: UInt32)
}

/// A client connection a loop owns: timed out by its sweep, asked to finish or closed when
/// the daemon stops.
protocol LoopConnection: LoopHandler {
    /// The frontend runtime it was accepted under (whose limiter counted it).
    var runtime: FrontendRuntime { get }
    func checkTimeouts(now: UInt64)
    func quiesce(now: UInt64)
    func close()
}

/// sched_setaffinity(2) for the loops' threads.
enum CPUAffinity {
    /// 1024 CPUs, glibc's cpu_set_t.
    typealias Mask = (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                      UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)
    static let empty: Mask = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)

    /// The CPUs this process may run on, in order.
    static func allowed() -> [Int] {
        var mask = empty
        let rc = withUnsafeMutableBytes(of: &mask) { sched_getaffinity(0, UInt($0.count), $0.baseAddress) }
        guard rc == 0 else { return [] }
        return withUnsafeBytes(of: &mask) { bytes in (0..<bytes.count * 8).filter { bytes[$0 / 8] & UInt8(1 << ($0 % 8)) != 0 } }
    }

    /// Keeps the calling thread on `cpu`; 0, or the errno of the failure.
    static func pin(to cpu: Int) -> Int32 {
        var mask = empty
        withUnsafeMutableBytes(of: &mask) { $0[cpu / 8] |= UInt8(1 << (cpu % 8)) }
        let rc = withUnsafeBytes(of: &mask) { sched_setaffinity(0, UInt($0.count), $0.baseAddress) }
        return rc == 0 ? 0 : errno
    }
}

enum L4Clock {
    static func nowMs() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1000 + UInt64(ts.tv_nsec) / 1_000_000
    }

    static func ms(_ d: Duration) -> UInt64 {
        UInt64(d.components.seconds) * 1000 + UInt64(d.components.attoseconds / 1_000_000_000_000_000)
    }
}
