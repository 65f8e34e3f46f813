import CLinux
import CMConfig
import CMTypes
import CNIOLLHTTP
import Glibc

/// One client connection of an HTTP-mode frontend, on one of the engine's loops.
///
/// Requests are parsed by SwiftNIO's HTTP/1 parser (`H1Parser`) as bytes arrive and written
/// on to a server as bytes: the request line and end-to-end headers as received, hop-by-hop
/// headers gone, X-Forwarded-For/-Proto added, bodies with their framing redone
/// (Content-Length as is, chunked re-chunked). Responses come back the same way. One request
/// is answered at a time, in order: after a request's end the parser pauses, and what the
/// client sent meanwhile (pipelining) waits in `pending`, the socket unread.
///
/// Each request goes to a server over a pooled keep-alive connection (`H1Upstream`); a server
/// that cannot be connected to, or whose connection fails before the first response byte of a
/// request that can be sent again (idempotent, body kept), is replaced by the next one, unseen
/// by the client. Errors of cm-lbd's own are complete responses with a reason in the body.
/// A request to switch protocols (WebSocket) that the server answers with 101 turns the
/// connection into a tunnel: bytes both ways, untouched, until both sides end.
final class H1Session: LoopConnection, H1ParserDelegate {
    /// Body kept for resending an idempotent request to another server; larger bodies are
    /// streamed once and not retried.
    static let retryBufferLimit = 64 * 1024
    /// Bytes waiting for a socket before reading from the other side pauses.
    static let backlogLimit = 64 * 1024
    /// Request bytes held while no server is connected yet before reading pauses.
    static let connectBacklogLimit = 256 * 1024
    /// After an error response that closes the connection: read and drop what the client
    /// still sends for this long, so the close does not reset the response away.
    static let lingerMs: UInt64 = 1000

    unowned(unsafe) let loop: L4Loop
    let runtime: FrontendRuntime
    let config: FrontendConfig
    let clientFD: Int32
    private var parser: H1Parser!

    /// Toward the client: responses.
    private var out = ByteQueue()
    /// Client bytes read after a request's end and not yet parsed.
    private var pending = ByteQueue()
    /// Toward the server: the request in progress, kept from its start while it may be sent again.
    private var up = ByteQueue()
    /// Bytes of `up` the current server has.
    private var upSent = 0

    private var clientReadable = true, clientHangup = false, clientEOF = false
    /// The client's socket is in the loop's epoll set: from the first time the session waits
    /// for the client (`watchClientIfWaiting`).
    private var clientWatched = false
    /// ... and for writability too: from the first write that would block on.
    private var clientWatchedWritable = false
    private var lastClient: UInt64
    /// When the head of the next request began (ms, loop time), 0 while none is being read:
    /// the first request's from the accept, a later one's from its first byte, so that the
    /// wait between keep-alive requests is client_timeout's alone. Checked by the sweep
    /// against http_request_timeout, which no byte resets.
    private var headStarted: UInt64
    /// A byte of that head has arrived (else the deadline closes without an answer).
    private var headBegun = false
    private var closed = false
    /// Write what `out` holds, then close.
    private var closeAfterFlush = false
    /// Close with a linger: the client may still be sending (an error answered early).
    private var lingerWanted = false
    /// Lingering close: reading and dropping until this time.
    private var lingerUntil: UInt64 = 0
    private var quiescing = false
    private var quiesceDeadline: UInt64 = 0
    /// The parser stopped after a request's end.
    private var parserPaused = false
    /// Inside `execute` of the request parser: nothing may parse again or go on to the next request.
    private var parsing = false
    private var served = 0
    private let clientIP: [UInt8]
    private let clientKey: UInt64

    // The request in progress.
    private var inRequest = false
    private var requestEnded = false
    private var expectBody = false
    private var requestChunked = false
    private var idempotent = false
    private var isHead = false
    private var client10 = false
    private var clientKeepAlive = false
    private var bodyBytes = 0
    /// `up` holds the whole request so far (it can be sent again).
    private var replayable = true
    /// A byte of it went to a server.
    private var sentAny = false
    private var tried: [Int] = []
    private var serverIndex: Int?
    private var server: ServerConfig?
    private var upstream: H1Upstream?
    private var responseStarted = false
    /// The final response's head is written (1xx heads do not count).
    private var finalResponse = false
    private var responseKeepAlive = false
    /// Re-chunk the response body (chunked from the server, an HTTP/1.1 client).
    private var rechunk = false
    /// When the server was last heard from or written to, for server_timeout.
    private var lastServer: UInt64 = 0
    /// The request asks to switch protocols (WebSocket): Upgrade goes to the server.
    private var upgradeRequested = false
    /// The server answered 101: the connection becomes a tunnel once the head is through.
    private var switching = false
    /// Bytes flow both ways untouched (after a 101); an end of input on one side becomes a
    /// write shutdown on the other.
    private var tunnel = false
    private var tunnelClientEOF = false, tunnelServerEOF = false
    private var clientShut = false, serverShut = false

    /// `peer`: the client's address as accept(2) gave it (sin_family 0 when unknown).
    init(loop: L4Loop, clientFD: Int32, peer: SocketAddressV4, runtime: FrontendRuntime) {
        self.loop = loop
        self.clientFD = clientFD
        self.runtime = runtime
        config = runtime.config
        lastClient = loop.now
        headStarted = loop.now
        // TCP_NODELAY comes from the listening socket (L4Listener).
        if peer.address.sin_family == sa_family_t(AF_INET) {
            clientKey = FrontendRuntime.key(peer)
            clientIP = Array(IPv4Address(rawValue: UInt32(bigEndian: peer.address.sin_addr.s_addr)).description.utf8)
        } else {
            clientKey = 0
            clientIP = []
        }
        parser = H1Parser(request: true, limit: config.maxHeaderBytes, delegate: self)
    }

    deinit {
        out.free()
        pending.free()
        up.free()
    }

    func start() {
        defer { watchClientIfWaiting() }
        runtime.counters.opened()
        serviceClient()
    }

    /// Puts the client's socket in the loop's epoll set (edge-triggered: the add reports what
    /// is ready by then) once the session waits for the client: for a request, its body, the
    /// room to write, a tunnel's bytes or a lingering close. Not while a complete request whose
    /// client asked to close waits for its response: that is the whole life of most such
    /// connections (their request is there when they are accepted), and they end without the
    /// epoll_ctl and the epoll bookkeeping in close(2). A client that goes away meanwhile is
    /// seen when its response is written. Called at the end of every entry from the loop but
    /// `handle`, which the loop calls only once the socket is in the set.
    private func watchClientIfWaiting() {
        guard !closed, !clientWatched else { return }
        if inRequest, requestEnded, !clientKeepAlive, !tunnel, lingerUntil == 0, out.isEmpty { return }
        clientWatched = true
        loop.register(self, fd: clientFD, writable: clientWatchedWritable)
    }

    // MARK: Client events

    func handle(fd: Int32, events: UInt32) {
        guard !closed else { return }
        let hangupBits = EPOLLERR.rawValue | EPOLLHUP.rawValue
        if events & (EPOLLIN.rawValue | EPOLLRDHUP.rawValue | hangupBits) != 0 { clientReadable = true }
        if events & (EPOLLRDHUP.rawValue | hangupBits) != 0 { clientHangup = true }
        if events & (EPOLLOUT.rawValue | hangupBits) != 0, !out.isEmpty {
            flushClient()
            if let u = upstream, u.readable { readServer(u) }
            tunnelEnds()
        }
        serviceClient()
    }

    /// Reads and parses what the client sent, as far as the request in progress allows, and
    /// goes on with a request that waited while the one before it was answered.
    private func serviceClient() {
        if tunnel {
            tunnelFromClient()
            return
        }
        while !closed {
            if lingerUntil != 0 {
                drainLinger()
                return
            }
            if parserPaused, !inRequest, !closeAfterFlush {
                parserPaused = false
                parser.resume()
                if !pending.isEmpty {
                    // At most one read's worth: parse it from the scratch buffer.
                    let n = pending.count
                    loop.scratch.copyMemory(from: pending.front, byteCount: n)
                    pending.removeAll()
                    feed(loop.scratch, n)
                    continue
                }
            }
            guard clientReadable, mayReadClient else { break }
            let n = cm_recv(clientFD, loop.scratch, UInt(L4Loop.scratchSize))
            if n > 0 {
                lastClient = loop.now
                if n < L4Loop.scratchSize, !clientHangup { clientReadable = false }
                feed(loop.scratch, n)
            } else if n == 0 {
                clientReadable = false
                clientEOF = true
                clientEnded()
            } else if errno == EAGAIN {
                clientReadable = false
            } else if errno != EINTR {
                close()
                return
            }
        }
        flushClient()
    }

    private var mayReadClient: Bool {
        // Also not while responses pile up unread (a client pipelining requests that cm-lbd
        // answers itself without reading the answers).
        if closeAfterFlush || parserPaused || clientEOF || out.count >= Self.backlogLimit { return false }
        let unsent = up.count - upSent
        return unsent < (upstream == nil ? Self.connectBacklogLimit : Self.backlogLimit)
    }

    /// The client shut its side: finish the request in flight (a client may half-close after
    /// sending it), else close.
    private func clientEnded() {
        if inRequest, requestEnded { return }
        if inRequest, !responseStarted, expectBody {
            // A body cut short: the server would wait for the rest.
            close()
            return
        }
        if !inRequest, out.isEmpty { close() }
    }

    private func feed(_ data: UnsafeMutableRawPointer, _ count: Int) {
        parsing = true
        let rc = parser.execute(data, count)
        parsing = false
        if rc == HPE_OK {
            // All taken.
        } else if rc == HPE_PAUSED || rc == HPE_PAUSED_UPGRADE {
            parserPaused = true
            let taken = parser.taken(from: data)
            if taken < count { pending.append(data + taken, count - taken) }
        } else if closeAfterFlush || closed {
            // A callback answered already (413, 431, 503 …).
        } else if responseStarted {
            close()
            return
        } else if parser.overflow {
            respond(431, "Request Header Fields Too Large", "request line and headers larger than \(config.maxHeaderBytes) bytes", close: true)
        } else {
            respond(400, "Bad Request", "malformed HTTP request: \(parser.errorReason)", close: true)
        }
        if upstream != nil { pumpUp() }
    }

    // MARK: The request (H1ParserDelegate of the client's parser)

    func messageBegin(_ p: H1Parser) {
        if headStarted == 0 { headStarted = loop.now }
        headBegun = true
    }

    func headComplete(_ p: H1Parser) -> Int32 {
        if p !== parser { return -1 }
        headStarted = 0
        headBegun = false
        runtime.counters.request()
        inRequest = true
        requestEnded = false
        responseStarted = false
        finalResponse = false
        bodyBytes = 0
        replayable = true
        sentAny = false
        tried.removeAll(keepingCapacity: true)
        let method = p.methodCode
        client10 = p.major == 1 && p.minor == 0
        clientKeepAlive = p.keepAlive && !quiescing
        requestChunked = p.chunked
        expectBody = requestChunked || (p.hasContentLength && p.contentLength > 0)
        isHead = method == UInt8(HTTP_HEAD.rawValue)
        idempotent = Self.isIdempotent(method)
        upgradeRequested = p.upgrade && !client10
        if method == UInt8(HTTP_CONNECT.rawValue) {
            respond(501, "Not Implemented", "CONNECT is not proxied by an http-mode frontend; use a tcp-mode one", close: true)
            return -1
        }
        if !upgradeRequested { p.ignoreUpgrade() }
        if p.hasContentLength, p.contentLength > UInt64(config.maxBodyBytes) {
            respond(413, "Payload Too Large", "request body of \(p.contentLength) bytes; at most \(config.maxBodyBytes)", close: true)
            return -1
        }
        up.removeAll()
        upSent = 0
        writeRequestHead(p)
        dispatch()
        return closeAfterFlush ? -1 : 0
    }

    func body(_ p: H1Parser, _ bytes: UnsafeRawPointer, _ count: Int) -> Int32 {
        if p !== parser { return -1 }
        guard inRequest else { return 0 }  // answered already (an error of ours): dropped
        bodyBytes += count
        guard bodyBytes <= config.maxBodyBytes else {
            if responseStarted {
                close()
            } else {
                respond(413, "Payload Too Large", "request body larger than \(config.maxBodyBytes) bytes", close: true)
            }
            return -1
        }
        up.appendBody(bytes, count, chunked: requestChunked)
        return 0
    }

    func messageComplete(_ p: H1Parser) -> Int32 {
        if p !== parser { return -1 }
        if inRequest {
            requestEnded = true
            served += 1
            if requestChunked { up.append("0\r\n\r\n") }
        }
        return H1Parser.pause
    }

    /// The request line and headers as they go to servers.
    private func writeRequestHead(_ p: H1Parser) {
        let bytes = p.bytes
        up.append(bytes, p.method)
        up.append(byte: 32)
        up.append(bytes, p.target)
        up.append(" HTTP/1.1\r\n")
        let named = connectionTokens(p)
        var forwardedFor: [Range<Int>] = []
        var hasHost = false
        for f in p.fields {
            let keep = upgradeRequested && p.name(f, is: "upgrade")
            if !keep, Self.isHopByHop(p, f) || named.contains(where: { p.sameToken($0, f.name) }) && !Self.isFraming(p, f) { continue }
            if p.name(f, is: "x-forwarded-for") {
                forwardedFor.append(f.value)
                continue
            }
            if p.name(f, is: "x-forwarded-proto") { continue }
            if p.name(f, is: "host") { hasHost = true }
            up.append(bytes, f.name)
            up.append(": ")
            up.append(bytes, f.value)
            up.append("\r\n")
        }
        up.append("X-Forwarded-For: ")
        for v in forwardedFor where !v.isEmpty {
            up.append(bytes, v)
            up.append(", ")
        }
        up.append(clientIP)
        up.append("\r\nX-Forwarded-Proto: http\r\n")
        if upgradeRequested { up.append("Connection: upgrade\r\n") }
        if client10, !hasHost {
            up.append("Host: ")
            up.append(Array(config.listen.description.utf8))
            up.append("\r\n")
        }
        up.append("\r\n")
    }

    /// Header names the Connection header lists (hop-by-hop for this message).
    private func connectionTokens(_ p: H1Parser) -> [Range<Int>] {
        var named: [Range<Int>] = []
        for f in p.fields where p.name(f, is: "connection") { named += p.tokens(f.value) }
        return named
    }

    /// Headers that apply to one connection only (RFC 9110 section 7.6.1). Transfer-Encoding
    /// is framing and stays; cm-lbd redoes the chunking itself.
    static func isHopByHop(_ p: H1Parser, _ f: H1Field) -> Bool {
        switch f.name.count {
        case 2: p.name(f, is: "te")
        case 7: p.name(f, is: "upgrade") || p.name(f, is: "trailer")
        case 10: p.name(f, is: "connection") || p.name(f, is: "keep-alive")
        case 16: p.name(f, is: "proxy-connection")
        case 18: p.name(f, is: "proxy-authenticate")
        case 19: p.name(f, is: "proxy-authorization")
        default: false
        }
    }

    static func isFraming(_ p: H1Parser, _ f: H1Field) -> Bool {
        p.name(f, is: "content-length") || p.name(f, is: "transfer-encoding")
    }

    static func isIdempotent(_ method: UInt8) -> Bool {
        switch UInt32(method) {
        case HTTP_GET.rawValue, HTTP_HEAD.rawValue, HTTP_OPTIONS.rawValue, HTTP_PUT.rawValue, HTTP_DELETE.rawValue, HTTP_TRACE.rawValue: true
        default: false
        }
    }

    // MARK: Choosing a server

    private func dispatch() {
        let pool = runtime.pool
        guard let (index, server) = pool.acquire(key: clientKey, excluding: tried.isEmpty ? [] : Set(tried)) else {
            runtime.noServer(tried: tried.count)
            if tried.isEmpty {
                respond(503, "Service Unavailable", "no server of backend \(pool.name) is available", close: !mayKeepAlive)
            } else {
                respond(502, "Bad Gateway", "no server of backend \(pool.name) answered (\(tried.count) tried)", close: !mayKeepAlive)
            }
            return
        }
        tried.append(index)
        serverIndex = index
        self.server = server
        if let idle = loop.upstreams.take(server.address) {
            attach(idle)
            return
        }
        switch H1Upstream.connect(to: server.address, loop: loop) {
        case .success(let u):
            u.idleTimeout = L4Clock.ms(config.serverTimeout)
            attach(u)
            if !u.connecting { pool.connected(index) }
        case .failure(let error):
            connectFailed(reason: error.description)
        }
    }

    /// Whether an error response now can leave the connection open: the request has ended,
    /// or has no body that would follow.
    private var mayKeepAlive: Bool { requestEnded || !expectBody }

    private func attach(_ u: H1Upstream) {
        upstream = u
        u.session = self
        u.requests += 1
        upSent = 0
        lastServer = loop.now
        if !parsing { pumpUp() }
    }

    /// The connect of the leased connection ended: `error` 0 for success.
    func upstreamConnected(_ u: H1Upstream, error: Int32) {
        defer { watchClientIfWaiting() }
        guard u === upstream else {
            u.close()
            return
        }
        if error != 0 {
            connectFailed(reason: String(cString: strerror(error)).lowercased())
        } else {
            if let i = serverIndex { runtime.pool.connected(i) }
            lastServer = loop.now
            pumpUp()
        }
        serviceClient()
    }

    /// The server could not be connected to: out of the pool for fail_backoff; the next
    /// server gets the request.
    private func connectFailed(reason: String) {
        if let u = upstream {
            upstream = nil
            u.close()
        }
        if let i = serverIndex, let server {
            serverIndex = nil
            runtime.serverFailed(index: i, server: server, reason: reason)
        }
        retryOrFail(502, "Bad Gateway", "server \(server?.label ?? "?") refused or did not answer: \(reason)")
    }

    /// The request could not be served by the server just tried: the next server if nothing
    /// was answered and the request can be sent again, else an error response.
    private func retryOrFail(_ status: Int, _ reason: StaticString, _ message: String) {
        guard inRequest else { return }
        let resendable = !sentAny || (idempotent && replayable)
        if !responseStarted, resendable, tried.count <= runtime.pool.config.retries {
            runtime.counters.retry()
            dispatch()
        } else if !responseStarted {
            respond(status, reason, message, close: !mayKeepAlive)
        } else {
            close()
        }
    }

    /// Writes request bytes to the server as far as its socket takes them.
    private func pumpUp() {
        guard let u = upstream, !u.connecting, !closed else { return }
        while upSent < up.count {
            let n = cm_send(u.fd, up.front + upSent, UInt(up.count - upSent), false)
            if n > 0 {
                upSent += n
                sentAny = true
                lastServer = loop.now
            } else if n < 0, errno == EINTR {
                continue
            } else if n < 0, errno == EAGAIN {
                return
            } else {
                upstreamFailed(u, reason: "connection closed")
                return
            }
        }
        // All written: keep it only while it may be sent again.
        if !idempotent || !replayable || up.count > Self.retryBufferLimit {
            if up.count > Self.retryBufferLimit || !idempotent { replayable = false }
            up.removeAll()
            upSent = 0
        }
    }

    // MARK: Server events

    func upstreamEvent(_ u: H1Upstream, writable: Bool) {
        defer { watchClientIfWaiting() }
        guard u === upstream, !closed else {
            u.close()
            return
        }
        if writable { pumpUp() }
        if upstream === u, u.readable { readServer(u) }
        serviceClient()
    }

    /// Reads what the server sent: parsed as a response, or passed on as it is in a tunnel.
    private func readServer(_ u: H1Upstream) {
        while !closed, upstream === u, u.readable, !tunnelServerEOF {
            if out.count >= Self.backlogLimit {
                // Send on what is there; the client's EPOLLOUT resumes us if it cannot take it.
                flushClient()
                if closed || out.count >= Self.backlogLimit { break }
                continue
            }
            let n = cm_recv(u.fd, loop.scratch, UInt(L4Loop.scratchSize))
            if n > 0 {
                lastServer = loop.now
                u.lastActive = lastServer
                if n < L4Loop.scratchSize, !u.hangup { u.readable = false }
                if tunnel {
                    out.append(loop.scratch, n)
                } else {
                    feedResponse(u, loop.scratch, n)
                }
            } else if n == 0 {
                u.readable = false
                if tunnel {
                    tunnelServerEOF = true
                } else {
                    serverEnded(u)
                }
            } else if errno == EAGAIN {
                u.readable = false
            } else if errno != EINTR {
                if tunnel {
                    close()
                    return
                }
                upstreamFailed(u, reason: String(cString: strerror(errno)).lowercased())
            }
        }
        flushClient()
        tunnelEnds()
    }

    private func feedResponse(_ u: H1Upstream, _ data: UnsafeMutableRawPointer, _ count: Int) {
        let rc = u.parser.execute(data, count)
        if rc == HPE_OK { return }
        if switching, rc == HPE_PAUSED || rc == HPE_PAUSED_UPGRADE {
            // What came after the 101's head is the new protocol's already.
            let taken = u.parser.taken(from: data)
            if taken < count { out.append(data + taken, count - taken) }
            startTunnel(u)
            return
        }
        if rc == HPE_PAUSED {
            // The response ended; more bytes after it are out of step.
            if u.parser.taken(from: data) < count { u.reusable = false }
            responseDone(u)
            return
        }
        if closed || upstream !== u { return }
        if responseStarted {
            close()
        } else {
            dropUpstream(u)
            respond(502, "Bad Gateway", "server \(server?.label ?? "?") sent an invalid response: \(u.parser.errorReason)", close: !mayKeepAlive)
        }
    }

    /// The server closed its side: the end of a response that runs to the close, or a failure.
    private func serverEnded(_ u: H1Upstream) {
        u.reusable = false
        guard finalResponse else {
            upstreamFailed(u, reason: "closed the connection before answering")
            return
        }
        // A response that runs to the close ends here; any other is cut short.
        if u.parser.finish() == HPE_PAUSED {
            responseDone(u)
        } else {
            dropUpstream(u)
            close()
        }
    }

    /// The connection to the server failed under the request.
    private func upstreamFailed(_ u: H1Upstream, reason: String) {
        guard u === upstream else {
            u.close()
            return
        }
        if responseStarted {
            dropUpstream(u)
            close()
            return
        }
        let reused = u.requests > 1
        upstream = nil
        u.close()
        if let i = serverIndex, let server {
            serverIndex = nil
            if reused {
                // A kept-alive connection the server had just closed: not the server's fault,
                // and the same server may take the request again.
                runtime.pool.release(i)
                if let last = tried.indices.last, tried[last] == i { tried.removeLast() }
            } else {
                runtime.serverFailed(index: i, server: server, reason: reason)
            }
        }
        retryOrFail(502, "Bad Gateway", "server \(server?.label ?? "?") closed the connection before answering")
    }

    /// Lets go of the server connection of the request (closing it) and of its pool count.
    private func dropUpstream(_ u: H1Upstream) {
        if upstream === u { upstream = nil }
        u.close()
        if let i = serverIndex {
            serverIndex = nil
            runtime.pool.release(i)
        }
    }

    // MARK: The response (H1ParserDelegate of the server's parser, through H1Upstream)

    func responseHead(_ p: H1Parser) -> Int32 {
        responseStarted = true
        let status = p.status
        if status >= 100, status < 200 {
            if status == 101 {
                // Only to a request that asked, once it is whole; the tunnel starts after this head.
                guard upgradeRequested, requestEnded else { return -1 }
                finalResponse = true
                switching = true
                writeResponseHead(p, status: status, extra: "Connection: upgrade\r\n", keepUpgrade: true)
                return 0
            }
            if !client10 { writeResponseHead(p, status: status, extra: "") }
            return 0
        }
        finalResponse = true
        let skipBody = isHead || status == 204 || status == 304
        let untilClose = !skipBody && !p.chunked && !p.hasContentLength
        rechunk = p.chunked && !client10 && !skipBody
        let dechunkForOld = p.chunked && client10
        // A refused upgrade closes too: the client may already send in the new protocol.
        responseKeepAlive = clientKeepAlive && requestEnded && !quiescing && !clientEOF && !untilClose && !dechunkForOld && !upgradeRequested
        let extra: StaticString = !responseKeepAlive ? "Connection: close\r\n" : client10 ? "Connection: keep-alive\r\n" : ""
        writeResponseHead(p, status: status, extra: extra, dropTransferEncoding: dechunkForOld)
        return isHead ? 1 : 0
    }

    private func writeResponseHead(_ p: H1Parser, status: Int, extra: StaticString, dropTransferEncoding: Bool = false, keepUpgrade: Bool = false) {
        let bytes = p.bytes
        out.append("HTTP/1.1 ")
        out.appendDecimal(status)
        out.append(byte: 32)
        out.append(bytes, p.target)
        out.append("\r\n")
        let named = connectionTokens(p)
        for f in p.fields {
            let keep = keepUpgrade && p.name(f, is: "upgrade")
            if !keep, Self.isHopByHop(p, f) || named.contains(where: { p.sameToken($0, f.name) }) && !Self.isFraming(p, f) { continue }
            if dropTransferEncoding, p.name(f, is: "transfer-encoding") { continue }
            out.append(bytes, f.name)
            out.append(": ")
            out.append(bytes, f.value)
            out.append("\r\n")
        }
        out.append(extra)
        out.append("\r\n")
    }

    func responseBody(_ bytes: UnsafeRawPointer, _ count: Int) -> Int32 {
        out.appendBody(bytes, count, chunked: rechunk)
        return 0
    }

    func responseComplete(_ p: H1Parser) -> Int32 {
        if !finalResponse { return 0 }  // 1xx: the final response follows
        if rechunk { out.append("0\r\n\r\n") }
        return H1Parser.pause
    }

    /// The response is complete: the connection goes back to the pool, the client gets the
    /// next request's turn or is closed.
    private func responseDone(_ u: H1Upstream) {
        upstream = nil
        u.session = nil
        let reuse = u.reusable && u.parser.keepAlive && requestEnded && up.count == upSent && !u.hangup
        if let i = serverIndex {
            serverIndex = nil
            runtime.pool.release(i)
        }
        if !(reuse && loop.upstreams.put(u)) { u.close() }
        inRequest = false
        up.removeAll()
        upSent = 0
        if !responseKeepAlive {
            closeAfterFlush = true
            // The server answered before the request's end: the client may still be sending.
            lingerWanted = !requestEnded && !clientEOF
        }
        flushClient()
    }

    // MARK: Tunnel (after 101 Switching Protocols)

    private func startTunnel(_ u: H1Upstream) {
        tunnel = true
        switching = false
        inRequest = false
        replayable = false
        u.reusable = false
        up.removeAll()
        upSent = 0
        if clientEOF {
            clientEOF = false
            tunnelClientEOF = true
        }
        // Bytes the client sent after its upgrade request are the new protocol's.
        if !pending.isEmpty {
            up.append(pending.front, pending.count)
            pending.removeAll()
        }
        pumpUp()
        flushClient()
    }

    private func tunnelFromClient() {
        guard let u = upstream else { return }
        while !closed, upstream === u, clientReadable, !tunnelClientEOF {
            if up.count - upSent >= Self.backlogLimit {
                pumpUp()
                if closed || upstream !== u || up.count - upSent >= Self.backlogLimit { break }
                continue
            }
            let n = cm_recv(clientFD, loop.scratch, UInt(L4Loop.scratchSize))
            if n > 0 {
                lastClient = loop.now
                if n < L4Loop.scratchSize, !clientHangup { clientReadable = false }
                up.append(loop.scratch, n)
            } else if n == 0 {
                clientReadable = false
                tunnelClientEOF = true
            } else if errno == EAGAIN {
                clientReadable = false
            } else if errno != EINTR {
                close()
                return
            }
        }
        if upstream === u { pumpUp() }
        tunnelEnds()
    }

    /// Passes an end of input on as a write shutdown once what came before it is through;
    /// closes when both sides have ended.
    private func tunnelEnds() {
        guard tunnel, !closed else { return }
        if tunnelServerEOF, out.isEmpty, !clientShut {
            clientShut = true
            shutdown(clientFD, Int32(SHUT_WR))
        }
        if tunnelClientEOF, up.count == upSent, !serverShut, let u = upstream {
            serverShut = true
            shutdown(u.fd, Int32(SHUT_WR))
        }
        if tunnelClientEOF, tunnelServerEOF, out.isEmpty, up.count == upSent { close() }
    }

    // MARK: Responses of our own

    /// A complete response from cm-lbd itself (errors), counted as an error.
    private func respond(_ status: Int, _ reason: StaticString, _ message: String, close: Bool) {
        guard !closed else { return }
        runtime.counters.error()
        if let u = upstream { dropUpstream(u) }
        if let i = serverIndex {
            serverIndex = nil
            runtime.pool.release(i)
        }
        let keepAlive = !close && inRequest && clientKeepAlive && !quiescing
        // Closing while the client may still be sending: drop what it sends for a while.
        lingerWanted = !keepAlive && !clientEOF && (!inRequest || !requestEnded)
        inRequest = false
        up.removeAll()
        upSent = 0
        let body = Array("cm-lbd: \(status) \(reason): \(message)\n".utf8)
        out.append("HTTP/1.1 ")
        out.appendDecimal(status)
        out.append(byte: 32)
        out.append(reason)
        out.append("\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ")
        out.appendDecimal(body.count)
        out.append(keepAlive ? "\r\n\r\n" : "\r\nConnection: close\r\n\r\n")
        out.append(body)
        if !keepAlive { closeAfterFlush = true }
        if !parsing { flushClient() }
    }

    // MARK: Writing and closing

    private func flushClient() {
        guard !closed else { return }
        while !out.isEmpty {
            // The last bytes before a close or shutdown: the FIN goes out with them.
            let n = cm_send(clientFD, out.front, UInt(out.count), closeAfterFlush)
            if n > 0 {
                out.consume(n)
                lastClient = loop.now
            } else if n < 0, errno == EINTR {
                continue
            } else if n < 0, errno == EAGAIN {
                if !clientWatchedWritable {
                    clientWatchedWritable = true
                    // Not in the set yet: watchClientIfWaiting adds it, writability included.
                    if clientWatched { loop.watchWritable(clientFD) }
                }
                return
            } else {
                close()
                return
            }
        }
        if closeAfterFlush, lingerUntil == 0 {
            if lingerWanted, !clientEOF {
                // The client may still be sending: let it, and drop it, for a while.
                shutdown(clientFD, Int32(SHUT_WR))
                lingerUntil = loop.now + Self.lingerMs
                drainLinger()
            } else {
                close()
            }
        } else if clientEOF, !inRequest, pending.isEmpty {
            close()
        }
    }

    /// Reads and drops until the client closes or the linger time is over.
    private func drainLinger() {
        while !closed {
            let n = cm_recv(clientFD, loop.scratch, UInt(L4Loop.scratchSize))
            if n > 0 { continue }
            if n < 0, errno == EAGAIN { return }
            if n < 0, errno == EINTR { continue }
            close()
        }
    }

    func checkTimeouts(now: UInt64) {
        guard !closed else { return }
        defer { watchClientIfWaiting() }
        if tunnel {
            if now - max(lastClient, lastServer) >= L4Clock.ms(config.clientTimeout) { close() }
            return
        }
        if lingerUntil != 0 {
            if now >= lingerUntil { close() }
            return
        }
        if quiescing, quiesceDeadline != 0, now >= quiesceDeadline, !inRequest {
            close()
            return
        }
        if headStarted != 0, !inRequest, !closeAfterFlush, now - headStarted >= L4Clock.ms(config.httpRequestTimeout) {
            requestHeadTimedOut()
            return
        }
        let clientTimeout = L4Clock.ms(config.clientTimeout)
        if !out.isEmpty, now - lastClient >= clientTimeout {
            close()  // the client does not read its response
            return
        }
        if let u = upstream {
            if u.connecting {
                if now - u.connectStarted >= L4Clock.ms(config.connectTimeout) {
                    connectFailed(reason: "no answer within \(DurationText.format(config.connectTimeout))")
                    serviceClient()
                }
                return
            }
            if !requestEnded, upSent == up.count, !responseStarted {
                // The server has all we got; the client is sending the rest.
                if now - lastClient >= clientTimeout { close() }
                return
            }
            if out.count < Self.backlogLimit, now - lastServer >= L4Clock.ms(config.serverTimeout) {
                if responseStarted {
                    close()
                } else {
                    let label = server?.label ?? "?"
                    dropUpstream(u)
                    respond(504, "Gateway Timeout", "server \(label) sent nothing for \(DurationText.format(config.serverTimeout))", close: !mayKeepAlive)
                    serviceClient()
                }
            }
            return
        }
        // Waiting for the client: an idle keep-alive connection or a slow request.
        if now - lastClient >= clientTimeout { close() }
    }

    /// http_request_timeout ran out before the request's head was complete: 408 and close, as
    /// HAProxy's `timeout http-request` does. When not a byte of a request came since the
    /// accept, only the close: browsers open connections ahead of their requests, and a 408
    /// there would be read as the answer to the request they send on it later (HAProxy's
    /// `option http-ignore-probes`, nginx likewise closes without a word).
    private func requestHeadTimedOut() {
        runtime.counters.requestTimeout()
        let limit = DurationText.format(config.httpRequestTimeout)
        let client = String(decoding: clientIP, as: UTF8.self)
        guard headBegun else {
            runtime.logger.info("frontend \(config.name): client \(client) sent no request within http_request_timeout \(limit); closed",
                                metadata: ["client": "\(client)"])
            close()
            return
        }
        runtime.logger.info("frontend \(config.name): client \(client) did not complete a request head within http_request_timeout \(limit); answered 408",
                            metadata: ["client": "\(client)"])
        respond(408, "Request Timeout", "request line and headers not complete within \(limit)", close: true)
    }

    /// The daemon stops: an idle keep-alive connection closes at once; one with a request in
    /// flight after its response; one that has not sent its first request yet gets a second
    /// to send it (it was accepted: its request may be on the way), answered with
    /// Connection: close.
    func quiesce(now: UInt64) {
        // A tunnel runs on until its end or drain_timeout.
        guard !closed, !quiescing, !tunnel else { return }
        defer { watchClientIfWaiting() }
        quiescing = true
        if inRequest {
            clientKeepAlive = false
        } else if served > 0, pending.isEmpty {
            close()
        } else {
            quiesceDeadline = now + 1000
        }
    }

    func close() {
        guard !closed else { return }
        closed = true
        if let u = upstream {
            upstream = nil
            u.close()
        }
        if let i = serverIndex {
            serverIndex = nil
            runtime.pool.release(i)
        }
        loop.unregister(fd: clientFD)
        Glibc.close(clientFD)
        runtime.counters.closed()
        loop.closed(self)
    }
}

