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
