import CLinux
import CMConfig
import CMTypes
import Glibc

/// One client connection of a TCP frontend and its connection to a server, on one loop.
///
/// Each direction has a fixed buffer. Reading stops while a buffer holds bytes the other side
/// has not taken (backpressure), and resumes when that side is writable again; an end of input
/// on one side becomes a write shutdown on the other once its buffer is flushed (half-close);
/// when both sides have ended, or either fails, both sockets close. What the client sent before
/// it was accepted is read at once (one buffer at most) and goes to the server as soon as its
/// connection is up; nothing more is read until then: a refused or timed-out connect marks the
/// server failed and the next one is tried, unseen by the client.
final class L4Pair: LoopConnection {
    static let listenerBit: UInt64 = 1 << 63
    static let bufferSize = 32 * 1024

    /// The loop that owns the pair (its `open` set) and outlives it; another one after a move
    /// (`L4Loop.hand`).
    unowned(unsafe) var loop: L4Loop
    let runtime: FrontendRuntime
    let clientFD: Int32
    var serverFD: Int32 = -1
    var serverIndex: Int?
    var server: ServerConfig?
    var tried: [Int] = []
    var connected = false
    var done = false

    /// client → server and server → client: bytes [start, end) not yet written.
    let up: UnsafeMutableRawPointer
    var upStart = 0, upEnd = 0
    let down: UnsafeMutableRawPointer
    var downStart = 0, downEnd = 0
    /// Edge-triggered: the socket may hold more than we read so far.
    var clientReadable = true, serverReadable = false
    var clientEOF = false, serverEOF = false
    /// The peer closed or reset (EPOLLRDHUP/HUP): its FIN is in, so what is queued is all
    /// there will be, and a short read is the end of input.
    var clientHangup = false, serverHangup = false
    /// We shut down writing toward the server / the client.
    var serverShut = false, clientShut = false
    /// The client socket is watched for writability from the first write that would block on;
    /// a server socket always is (the connect needs it).
    var clientWatchedWritable = false, serverWatchedWritable = true
    var connectStarted: UInt64 = 0
    var lastClient: UInt64, lastServer: UInt64

    /// The client's address, as accept(2) gave it.
    let peer: SocketAddressV4

    init(loop: L4Loop, clientFD: Int32, peer: SocketAddressV4, runtime: FrontendRuntime) {
        self.loop = loop
        self.clientFD = clientFD
        self.peer = peer
        self.runtime = runtime
        up = loop.takeBuffer()
        down = loop.takeBuffer()
        let now = loop.now
        lastClient = now
        lastServer = now
        // TCP_NODELAY comes from the listening socket (L4Listener).
    }

    func start() {
        runtime.counters.opened()
        runtime.counters.request()
        if runtime.config.proxyProtocol,
           let header = ProxyProtocol.v2Header(client: peer, local: Self.localAddress(clientFD)) {
            header.withUnsafeBytes { up.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            upEnd = header.count
        }
        readAhead()
        connectNext()
    }

    /// Takes what the client sent already (a client that speaks first, as in HTTP, mostly has
    /// by the time it is accepted), so that it is in hand when the server's connection is made.
    private func readAhead() {
        let room = Self.bufferSize - upEnd
        let n = cm_recv(clientFD, up + upEnd, UInt(room))
        if n > 0 {
            upEnd += n
            lastClient = loop.now
            if n < room { clientReadable = false }
        } else if n == 0 {
            clientEOF = true
            clientReadable = false
        } else if errno == EAGAIN {
            clientReadable = false
        }
        // Any other error shows again in the first read once the server is connected.
    }

    // MARK: Connecting

    private func connectNext() {
        let pool = runtime.pool
        guard let (index, server) = pool.acquire(key: clientKey(), excluding: tried.isEmpty ? [] : Set(tried)) else {
            runtime.counters.error()
            runtime.noServer(tried: tried.count)
            close()
            return
        }
        tried.append(index)
        serverIndex = index
        self.server = server
        let (fd, done, e) = L4Socket.connect(to: server.address, dataReady: upEnd > 0)
        guard fd >= 0 else {
            connectFailed(errno: e)
            return
        }
        serverFD = fd
        connectStarted = loop.now
        loop.register(self, fd: fd)
        if done { serverConnected() }
    }

    private func connectFailed(errno e: Int32) {
        if serverFD >= 0 {
            loop.unregister(fd: serverFD)
            Glibc.close(serverFD)
            serverFD = -1
        }
        if let i = serverIndex, let server {
            serverIndex = nil
            let reason = e == ETIMEDOUT ? "no answer within \(DurationText.format(runtime.config.connectTimeout))" : String(cString: strerror(e)).lowercased()
            runtime.serverFailed(index: i, server: server, reason: reason)
        }
        if tried.count <= runtime.pool.config.retries {
            runtime.counters.retry()
            connectNext()
        } else {
            runtime.counters.error()
            close()
        }
    }

    private func serverConnected() {
        connected = true
        if let i = serverIndex { runtime.pool.connected(i) }
        lastServer = loop.now
        pumpUp()
        pumpDown()
    }

    // MARK: Events

    func handle(fd: Int32, events: UInt32) {
        if done { return }
        let hangup = events & (EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0
        if fd == clientFD {
            if events & (EPOLLIN.rawValue | EPOLLRDHUP.rawValue) != 0 || hangup { clientReadable = true }
            if events & EPOLLRDHUP.rawValue != 0 || hangup { clientHangup = true }
            guard connected else {
                if hangup { close() }
                return
            }
            if events & EPOLLOUT.rawValue != 0 || hangup { pumpDown() }
            pumpUp()
        } else if fd == serverFD {
            if !connected {
                guard let error = L4Socket.connectResult(fd, events: events) else { return }
                if error != 0 {
                    connectFailed(errno: error)
                    return
                }
            }
            // A server that speaks first may have done so by the time its connect is seen done:
            // that edge comes once.
            if events & (EPOLLIN.rawValue | EPOLLRDHUP.rawValue) != 0 || hangup { serverReadable = true }
            if events & EPOLLRDHUP.rawValue != 0 || hangup { serverHangup = true }
            if !connected {
                serverConnected()
                return
            }
            if events & EPOLLOUT.rawValue != 0 || hangup { pumpUp() }
            pumpDown()
        }
    }

    /// client → server.
    private func pumpUp() {
        guard !done else { return }
        if !move(from: clientFD, to: serverFD, buffer: up, start: &upStart, end: &upEnd, readable: &clientReadable, hangup: clientHangup,
                 eof: &clientEOF, shut: &serverShut, last: &lastClient, watched: &serverWatchedWritable,
                 otherDone: serverEOF && downStart == downEnd) {
            close()
            return
        }
        finishIfDone()
    }

    /// server → client.
    private func pumpDown() {
        guard !done else { return }
        if !move(from: serverFD, to: clientFD, buffer: down, start: &downStart, end: &downEnd, readable: &serverReadable, hangup: serverHangup,
                 eof: &serverEOF, shut: &clientShut, last: &lastServer, watched: &clientWatchedWritable,
                 otherDone: clientEOF && upStart == upEnd) {
            close()
            return
        }
        finishIfDone()
    }

    /// Writes what is buffered, reads more while the writer keeps up, passes an end of input on
    /// as a write shutdown. False on an error of either socket.
    private func move(from: Int32, to: Int32, buffer: UnsafeMutableRawPointer, start: inout Int, end: inout Int,
                      readable: inout Bool, hangup: Bool, eof: inout Bool, shut: inout Bool, last: inout UInt64, watched: inout Bool,
                      otherDone: Bool) -> Bool {
        while true {
            while start < end {
                // The end of input is already in: the shutdown or close right after this sends
                // the FIN in the same packet.
                let n = cm_send(to, buffer + start, UInt(end - start), eof)
                if n > 0 {
                    start += n
                } else if n < 0, errno == EAGAIN || errno == EINTR {
                    if errno == EINTR { continue }
                    if !watched {
                        watched = true
                        loop.watchWritable(to)
                    }
                    return true  // EPOLLOUT of `to` resumes us
                } else {
                    return false
                }
            }
            start = 0
            end = 0
            if eof {
                if !shut {
                    shut = true
                    // When the other direction is over too the pair closes now, and close(2)
                    // says the same: one system call less per connection.
                    if !otherDone { shutdown(to, Int32(SHUT_WR)) }
                }
                return true
            }
            guard readable else { return true }
            let n = cm_recv(from, buffer, UInt(Self.bufferSize))
            if n > 0 {
                end = n
                last = loop.now
                // A short read emptied the socket; its next data raises a new edge. After the
                // peer's FIN (RDHUP) nothing more can come: that is the end of input, without
                // a read(2) that returns 0.
                if n < Self.bufferSize {
                    readable = false
                    if hangup { eof = true }
                }
            } else if n == 0 {
                eof = true
                readable = false
            } else if errno == EAGAIN {
                readable = false
                return true
            } else if errno != EINTR {
                return false
            }
        }
    }

    private func finishIfDone() {
        if clientEOF, serverEOF, upStart == upEnd, downStart == downEnd { close() }
    }

    func checkTimeouts(now: UInt64) {
        guard !done else { return }
        if !connected {
            if serverFD >= 0, now - connectStarted >= L4Clock.ms(runtime.config.connectTimeout) { connectFailed(errno: ETIMEDOUT) }
            return
        }
        // A pair that moved from another loop may carry that loop's later time of day: each
        // loop reads the clock once per turn, and a loop takes every queued command in one turn.
        let last = max(lastClient, lastServer)
        let idle = now > last ? now - last : 0
        // Both sides quiet for the shorter of the two timeouts.
        if idle >= min(L4Clock.ms(runtime.config.clientTimeout), L4Clock.ms(runtime.config.serverTimeout)) { close() }
    }

    /// Nothing in flight and both sides open: the pair may change loops.
    var canMove: Bool { connected && !done && upStart == upEnd && downStart == downEnd && !clientEOF && !serverEOF }

    /// Leaves the loop's epoll set (before it is handed to another loop).
    func leave() {
        epoll_ctl(loop.epfd, EPOLL_CTL_DEL, clientFD, nil)
        epoll_ctl(loop.epfd, EPOLL_CTL_DEL, serverFD, nil)
        loop.unregister(fd: clientFD)
        loop.unregister(fd: serverFD)
    }

    /// Joins `newLoop`: EPOLL_CTL_ADD reports what is ready now, and both sides are read once in
    /// case an edge passed in between.
    func arrive(on newLoop: L4Loop) {
        loop = newLoop
        newLoop.register(self, fd: clientFD, writable: clientWatchedWritable)
        newLoop.register(self, fd: serverFD, writable: serverWatchedWritable)
        clientReadable = true
        serverReadable = true
        pumpUp()
        pumpDown()
    }

    /// TCP connections run to their end when the daemon stops.
    func quiesce(now: UInt64) {}

    func close() {
        guard !done else { return }
        done = true
        // Here, on the owning loop's thread, not in deinit: a pair handed to another loop may be
        // released last by the loop it left, and the spare buffers belong to one thread.
        loop.returnBuffer(up)
        loop.returnBuffer(down)
        loop.unregister(fd: clientFD)
        Glibc.close(clientFD)
        if serverFD >= 0 {
            loop.unregister(fd: serverFD)
            Glibc.close(serverFD)
        }
        if let i = serverIndex {
            serverIndex = nil
            runtime.pool.release(i)
        }
        runtime.counters.closed()
        loop.closed(self)
    }

    // MARK: Addresses

    private func clientKey() -> UInt64 {
        // Only consistent hashing looks at the client's address.
        guard runtime.pool.algorithm == .source, peer.address.sin_family == sa_family_t(AF_INET) else { return 0 }
        return FrontendRuntime.key(peer)
    }

    /// The address the client connected to (for the PROXY header); the client's own comes with
    /// accept(2).
    static func localAddress(_ fd: Int32) -> SocketAddressV4? {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let rc = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard rc == 0, address.sin_family == sa_family_t(AF_INET) else { return nil }
        return SocketAddressV4(address: address)
    }
}

/// An IPv4 socket address as the kernel gives it.
struct SocketAddressV4 {
    var address: sockaddr_in
}

/// A pair is used by one loop's thread at a time; it changes threads only through a loop's
/// command queue (a mutex), see `L4Loop.moveToTheirCPUs`.
extension L4Pair: @unchecked Sendable {}
