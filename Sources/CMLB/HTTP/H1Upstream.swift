import CLinux
import CMTypes
import Glibc

/// A keep-alive HTTP/1.1 connection to a server, owned by one loop: leased to one session
/// for one request, idle in the loop's `UpstreamPool` between requests. Its response parser
/// hands what it finds to the session that leases it.
final class H1Upstream: LoopHandler, H1ParserDelegate {
    unowned(unsafe) let loop: L4Loop
    let fd: Int32
    let server: IPv4Endpoint
    private(set) var parser: H1Parser!
    /// The session whose request this connection carries; nil while idle.
    var session: H1Session?
    var connecting = true
    /// Edge-triggered: the socket may hold unread bytes.
    var readable = false
    var hangup = false
    /// Requests it has carried; above 1 it was reused.
    var requests = 0
    /// False once the server said `Connection: close`, sent more than a response, or the
    /// request was not wholly sent.
    var reusable = true
    private(set) var closed = false
    var idle = false
    var lastActive: UInt64
    let connectStarted: UInt64
    /// How long it may sit idle in the pool (the frontend's server_timeout).
    var idleTimeout: UInt64 = 60_000

    private init(loop: L4Loop, fd: Int32, server: IPv4Endpoint, now: UInt64) {
        self.loop = loop
        self.fd = fd
        self.server = server
        lastActive = now
        connectStarted = now
        parser = H1Parser(request: false, limit: 64 * 1024, delegate: self)
    }

    /// Starts a non-blocking connect; the session hears of its end through `handle`. Fails
    /// when the connect failed at once. A session connects for a request in hand, which goes
    /// out as soon as it is up (`dataReady`).
    static func connect(to server: IPv4Endpoint, loop: L4Loop) -> Result<H1Upstream, SystemError> {
        let (fd, done, e) = L4Socket.connect(to: server, dataReady: true)
        guard fd >= 0 else { return .failure(SystemError("connect", errno: e)) }
        let upstream = H1Upstream(loop: loop, fd: fd, server: server, now: loop.now)
        loop.register(upstream, fd: fd)
        if done { upstream.connecting = false }
        return .success(upstream)
    }

    func handle(fd: Int32, events: UInt32) {
        if closed { return }
        let hangupBits = EPOLLERR.rawValue | EPOLLHUP.rawValue
        if connecting {
            guard let error = L4Socket.connectResult(fd, events: events) else { return }
            if error == 0 { connecting = false }
            session?.upstreamConnected(self, error: error)
            return
        }
        if events & (EPOLLIN.rawValue | EPOLLRDHUP.rawValue | hangupBits) != 0 { readable = true }
        if events & (EPOLLRDHUP.rawValue | hangupBits) != 0 { hangup = true }
        guard let session else {
            // Idle in the pool and the server closed it (or sent what nobody asked for).
            if readable { close() }
            return
        }
        session.upstreamEvent(self, writable: events & (EPOLLOUT.rawValue | hangupBits) != 0)
    }

    func close() {
        guard !closed else { return }
        closed = true
        session = nil
        if idle { loop.upstreams.remove(self) }
        loop.unregister(fd: fd)
        Glibc.close(fd)
        // The parser's delegate is this object; the parser goes with it.
    }

    /// Ready for the next request from the pool.
    func prepareForReuse() {
        parser.reset()
    }

    // MARK: H1ParserDelegate (the response), passed to the session

    func headComplete(_ parser: H1Parser) -> Int32 { session?.responseHead(parser) ?? -1 }
    func body(_ parser: H1Parser, _ bytes: UnsafeRawPointer, _ count: Int) -> Int32 { session?.responseBody(bytes, count) ?? -1 }
    func messageComplete(_ parser: H1Parser) -> Int32 { session?.responseComplete(parser) ?? -1 }
}

/// A loop's idle connections to servers, by server: taken for a request, put back after its
/// response. Touched only by the loop's thread.
final class UpstreamPool {
    private var idle: [IPv4Endpoint: [H1Upstream]] = [:]
    /// Idle connections kept per server and loop.
    static let maxIdlePerServer = 256

    /// An idle connection to `server`, most recently used first.
    func take(_ server: IPv4Endpoint) -> H1Upstream? {
        while let u = idle[server]?.popLast() {
            u.idle = false
            if !u.closed, !u.hangup { return u }
            u.close()
        }
        return nil
    }

    /// Keeps `u` for the next request; false when the pool for its server is full.
    func put(_ u: H1Upstream) -> Bool {
        guard idle[u.server]?.count ?? 0 < Self.maxIdlePerServer else { return false }
        u.idle = true
        u.prepareForReuse()
        // In place: a copy taken out and put back would retain every connection in it.
        idle[u.server, default: []].append(u)
        return true
    }

    func remove(_ u: H1Upstream) {
        u.idle = false
        idle[u.server]?.removeAll { $0 === u }
    }

    /// Closes connections idle longer than their server_timeout.
    func sweep(now: UInt64) {
        var stale: [H1Upstream] = []
        for list in idle.values {
            for u in list where now - u.lastActive >= u.idleTimeout { stale.append(u) }
        }
        stale.forEach { $0.close() }
    }

    func closeAll() {
        let all = idle.values.flatMap { $0 }
        all.forEach { $0.close() }
        idle = [:]
    }
}
