import CMConfig
import CMTypes
import NIOCore
import NIOHTTP1
import NIOPosix

/// One client connection of an HTTP-mode frontend (NIOHTTP1 parses; requests are answered one
/// at a time, in order: a pipelined request waits in `pipelined` until the response before it
/// is written — done here rather than by NIOHTTP1's pipelining handler, which stops and
/// restarts reading around every request, two epoll_ctl(2) calls each). Each request
/// goes to a server over a pooled keep-alive connection with X-Forwarded-For/-Proto added;
/// a server that cannot be connected to, or whose connection fails before the first response
/// byte of an idempotent request, is replaced by the next one unseen by the client.
final class HTTPSession: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// Body kept for resending an idempotent request to another server; larger bodies are
    /// streamed once and not retried.
    static let retryBufferLimit = 64 * 1024
    /// Body buffered while no server is connected yet before the client is paused.
    static let pauseBufferLimit = 256 * 1024

    static func configure(channel: Channel, frontend: FrontendRuntime, pools: HTTPConnectionPools) throws {
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderListSize = frontend.config.maxHeaderBytes
        limits.maxHeaderFieldSize = frontend.config.maxHeaderBytes
        let ops = channel.pipeline.syncOperations
        let session = HTTPSession(frontend: frontend, pools: pools)
        // Outbound header validation is off on both sides: every header we send was parsed,
        // and so validated, by NIOHTTP1's decoder, or is one of our own.
        try ops.configureHTTPServerPipeline(withPipeliningAssistance: false, withErrorHandling: false,
                                             withOutboundHeaderValidation: false, withEncoderConfiguration: .init(), withDecoderLimitConfiguration: limits)
        try ops.addHandler(session)
    }

    /// A class, not a struct: the session changes it in place at every step, and a struct of
    /// this many references was copied (retained and released) at each.
    final class Request {
        let id: Int
        /// As sent to servers: hop-by-hop headers gone, X-Forwarded-* added.
        var head: HTTPRequestHead
        var body: [ByteBuffer] = []
        var bodyBytes = 0
        var ended = false
        var idempotent: Bool
        /// The head went to a server (whose connection may since have failed).
        var sent = false
        /// `body` holds all of the body sent so far, so the request can be sent again.
        var replayable = true
        var tried: Set<Int> = []
        var serverIndex: Int?
        var server: ServerConfig?
        var connection: BackendConnection?
        var responseStarted = false
        var clientKeepAlive: Bool

        init(id: Int, head: HTTPRequestHead, idempotent: Bool, clientKeepAlive: Bool) {
            self.id = id
            self.head = head
            self.idempotent = idempotent
            self.clientKeepAlive = clientKeepAlive
        }
    }

    let frontend: FrontendRuntime
    let pools: HTTPConnectionPools
    private var context: ChannelHandlerContext?
    private var request: Request?
    private var nextID = 0
    private var clientKey: UInt64 = 0
    private var clientIP = ""
    private var closing = false
    private var paused = false
    /// The daemon is stopping: this connection closes after the response in progress.
    private var quiescing = false
    /// Requests answered on this connection.
    private var served = 0
    /// Parts of requests that arrived while the one before is still being answered.
    private var pipelined: [HTTPServerRequestPart] = []
    /// Pipelined parts held at most; a client sending more without reading is closed.
    static let pipelineLimit = 1024

    init(frontend: FrontendRuntime, pools: HTTPConnectionPools) {
        self.frontend = frontend
        self.pools = pools
    }

    var config: FrontendConfig { frontend.config }

    // MARK: Client side

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    /// The pipeline is torn down (also when channelInactive did not reach us, as when the
    /// decoder was mid-buffer): let go of the context, or session and context keep each other.
    func handlerRemoved(context: ChannelHandlerContext) {
        abandonRequest()
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        frontend.counters.opened()
        clientKey = FrontendRuntime.key(context.channel.remoteAddress)
        clientIP = context.channel.remoteAddress?.ipAddress ?? ""
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        frontend.counters.closed()
        abandonRequest()
        self.context = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        let part = unwrapInboundIn(data)
        // A part of the next request while this one's response is still due: keep it.
        if !pipelined.isEmpty || request?.ended == true {
            guard pipelined.count < Self.pipelineLimit else {
                context.close(promise: nil)
                return
            }
            pipelined.append(part)
            return
        }
        handle(part)
    }

    private func handle(_ part: HTTPServerRequestPart) {
        switch part {
        case .head(let head):
            received(head)
        case .body(let buffer):
            receivedBody(buffer)
        case .end(let trailers):
            guard let r = request, !r.ended else { return }
            r.ended = true
            served += 1
            if let c = r.connection { c.send(.end(trailers), flush: true) }
        }
    }

    /// The response is written: go on with the requests that came meanwhile, up to the next
    /// one that has to wait for its own response.
    private func nextPipelined() {
        while !closing, request?.ended != true, !pipelined.isEmpty {
            handle(pipelined.removeFirst())
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        request?.connection?.channel.flush()
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        // The client reads our response slower than the server sends it: pause the server.
        if let c = request?.connection { c.channel.setOption(.autoRead, value: context.channel.isWritable).whenFailure { _ in } }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            // client_timeout without a byte either way.
            context.close(promise: nil)
            return
        }
        if event is ChannelShouldQuiesceEvent {
            // The daemon stops (there is no NIOHTTP1 pipelining handler here to take this).
            quiesce()
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let parse = error as? HTTPParserError {
            if request?.responseStarted == true {
                context.close(promise: nil)
            } else if parse == .headerOverflow {
                respond(.requestHeaderFieldsTooLarge, "request headers larger than \(config.maxHeaderBytes) bytes", close: true)
            } else {
                respond(.badRequest, "malformed HTTP request: \(parse)", close: true)
            }
            return
        }
        context.close(promise: nil)
    }

    private func received(_ head: HTTPRequestHead) {
        frontend.counters.request()
        guard Self.headSize(head) <= config.maxHeaderBytes else {
            respond(.requestHeaderFieldsTooLarge, "request line and headers larger than \(config.maxHeaderBytes) bytes", close: true)
            return
        }
        if let length = head.headers.first(name: "content-length").flatMap({ Int($0) }), length > config.maxBodyBytes {
            respond(.payloadTooLarge, "request body of \(length) bytes; at most \(config.maxBodyBytes)", close: true)
            return
        }
        var forwarded = HTTPRequestHead(version: .http1_1, method: head.method, uri: head.uri, headers: Self.endToEnd(head.headers))
        let previous = head.headers[canonicalForm: "x-forwarded-for"].joined(separator: ", ")
        forwarded.headers.replaceOrAdd(name: "X-Forwarded-For", value: previous.isEmpty ? clientIP : "\(previous), \(clientIP)")
        forwarded.headers.replaceOrAdd(name: "X-Forwarded-Proto", value: "http")
        if head.version.major == 1, head.version.minor == 0, !forwarded.headers.contains(name: "host") {
            forwarded.headers.add(name: "Host", value: config.listen.description)
        }
        nextID += 1
        let idempotent = Self.isIdempotent(head.method)
        request = Request(id: nextID, head: forwarded, idempotent: idempotent, clientKeepAlive: head.isKeepAlive && !quiescing)
        dispatch()
    }

    private func receivedBody(_ buffer: ByteBuffer) {
        guard let r = request else { return }
        r.bodyBytes += buffer.readableBytes
        guard r.bodyBytes <= config.maxBodyBytes else {
            if r.responseStarted {
                context?.close(promise: nil)
            } else {
                respond(.payloadTooLarge, "request body larger than \(config.maxBodyBytes) bytes", close: true)
            }
            return
        }
        let kept = r.body.reduce(0) { $0 + $1.readableBytes }
        if let c = r.connection {
            c.send(.body(.byteBuffer(buffer)), flush: false)
            if r.idempotent, r.replayable, kept + buffer.readableBytes <= Self.retryBufferLimit {
                r.body.append(buffer)
            } else {
                r.replayable = false
                r.body = []
            }
        } else {
            r.body.append(buffer)
            if kept + buffer.readableBytes > Self.pauseBufferLimit, !paused {
                paused = true
                context?.channel.setOption(.autoRead, value: false).whenFailure { _ in }
            }
        }
    }

    /// The daemon stops. Unlike NIOHTTP1's own quiescing, a connection that has not sent its
    /// first request yet is not closed under the client (its request is on the way: it was
    /// accepted); it gets a second to send it, which is answered with Connection: close.
    /// An idle keep-alive connection closes at once; one with a request in flight after its
    /// response.
    func quiesce() {
        guard let context, !quiescing else { return }
        quiescing = true
        if let r = request {
            r.clientKeepAlive = false
        } else if served > 0 {
            context.close(promise: nil)
        } else {
            let channel = context.channel
            context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(1)) {
                if self.request == nil, self.served == 0 { channel.close(promise: nil) }
            }
        }
    }

    // MARK: Choosing a server

    private func dispatch() {
        guard let r = request, let context else { return }
        guard let (index, server) = frontend.pool.acquire(key: clientKey, excluding: r.tried) else {
            frontend.noServer(tried: r.tried.count)
            if r.tried.isEmpty {
                respond(.serviceUnavailable, "no server of backend \(frontend.pool.name) is available", close: !r.ended)
            } else {
                respond(.badGateway, "no server of backend \(frontend.pool.name) answered (\(r.tried.count) tried)", close: !r.ended)
            }
            return
        }
        r.tried.insert(index)
        r.serverIndex = index
        r.server = server
        if let idle = pools.take(server.address, loop: context.eventLoop) {
            attach(idle)
            return
        }
        let id = r.id
        BackendConnection.connect(to: server.address, on: context.eventLoop, connectTimeout: config.connectTimeout,
                                  idleTimeout: config.serverTimeout, pools: pools)
            .assumeIsolated()
            .whenComplete { result in
                switch result {
                case .success(let connection):
                    self.frontend.pool.connected(index)
                    guard self.request?.id == id, self.request?.serverIndex == index else {
                        self.pools.put(connection, loop: connection.channel.eventLoop)
                        return
                    }
                    self.attach(connection)
                case .failure(let error):
                    let counted = self.request?.id == id && self.request?.serverIndex == index
                    if counted { self.request?.serverIndex = nil }
                    self.frontend.connectFailed(index: index, server: server, error: error, wasCounted: counted)
                    if counted { self.retryOrFail(status: .badGateway, "server \(server.label) refused or did not answer: \(error)") }
                }
            }
    }

    private func attach(_ connection: BackendConnection) {
        guard let r = request else {
            pools.put(connection, loop: connection.channel.eventLoop)
            return
        }
        connection.session = self
        connection.requests += 1
        r.connection = connection
        connection.send(.head(r.head), flush: false)
        for part in r.body { connection.send(.body(.byteBuffer(part)), flush: false) }
        if r.ended { connection.send(.end(nil), flush: false) }
        connection.channel.flush()
        r.sent = true
        if !r.idempotent {
            // Never sent twice: a server may have acted on it.
            r.body = []
            r.replayable = false
        }
        if paused {
            paused = false
            context?.channel.setOption(.autoRead, value: true).whenFailure { _ in }
        }
    }

    /// The request could not be served by the server just tried: the next server if nothing
    /// was answered and the request can be sent again, else an error response.
    private func retryOrFail(status: HTTPResponseStatus, _ message: String) {
        guard let r = request else { return }
        let resendable = r.connection == nil && (!r.sent || (r.idempotent && r.replayable))
        if !r.responseStarted, resendable, r.tried.count <= frontend.pool.config.retries {
            frontend.counters.retry()
            dispatch()
        } else if !r.responseStarted {
            respond(status, message, close: !r.ended)
        } else {
            context?.close(promise: nil)
        }
    }

    private func abandonRequest() {
        guard let r = request else { return }
        request = nil
        if let c = r.connection {
            c.session = nil
            c.close()
        }
        if let i = r.serverIndex { frontend.pool.release(i) }
    }

    // MARK: Server side (called by BackendHandler on the same event loop)

    func backendRead(_ part: HTTPClientResponsePart, from connection: BackendConnection) {
        guard let r = request, r.connection === connection, let context else {
            connection.close()
            return
        }
        switch part {
        case .head(let head):
            r.responseStarted = true
            if !head.isKeepAlive { connection.reusable = false }
            var out = HTTPResponseHead(version: .http1_1, status: head.status, headers: Self.endToEnd(head.headers))
            if !r.clientKeepAlive || !r.ended { out.headers.replaceOrAdd(name: "Connection", value: "close") }
            context.write(wrapOutboundOut(.head(out)), promise: nil)
        case .body(let buffer):
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
            if !context.channel.isWritable { connection.channel.setOption(.autoRead, value: false).whenFailure { _ in } }
        case .end(let trailers):
            let keepAlive = r.clientKeepAlive && r.ended
            request = nil
            connection.session = nil
            if let i = r.serverIndex { frontend.pool.release(i) }
            if r.ended {
                pools.put(connection, loop: connection.channel.eventLoop)
            } else {
                connection.close()
            }
            let done = context.writeAndFlush(wrapOutboundOut(.end(trailers)))
            if !keepAlive {
                closing = true
                let channel = context.channel
                done.whenComplete { _ in channel.close(promise: nil) }
            } else {
                nextPipelined()
            }
        }
    }

    /// The server's bytes of this read are all written: send them on.
    func backendReadComplete() { context?.flush() }

    func backendFailed(_ connection: BackendConnection, error: any Error) {
        guard let r = request, r.connection === connection else { return }
        connection.session = nil
        connection.close()
        r.connection = nil
        let reused = connection.requests > 1
        if let i = r.serverIndex, let server = r.server {
            r.serverIndex = nil
            if reused || r.responseStarted {
                // A kept-alive connection the server had just closed: not the server's fault.
                frontend.pool.release(i)
                if reused { r.tried.remove(i) }
            } else {
                frontend.connectFailed(index: i, server: server, error: error, wasCounted: true)
            }
        }
        retryOrFail(status: .badGateway, "server \(r.server?.label ?? "?") closed the connection before answering")
    }

    func backendTimedOut(_ connection: BackendConnection) {
        guard let r = request, r.connection === connection else {
            connection.close()
            return
        }
        connection.session = nil
        connection.close()
        r.connection = nil
        if let i = r.serverIndex { frontend.pool.release(i) }
        r.serverIndex = nil
        if r.responseStarted {
            context?.close(promise: nil)
        } else {
            respond(.gatewayTimeout, "server \(r.server?.label ?? "?") sent nothing for \(DurationText.format(config.serverTimeout))", close: !r.ended)
        }
    }

    // MARK: Responses of our own

    /// A complete response from cm-lbd itself (errors), counted as an error.
    private func respond(_ status: HTTPResponseStatus, _ message: String, close: Bool) {
        guard let context else { return }
        frontend.counters.error()
        let keepAlive = !close && (request?.clientKeepAlive ?? false)
        if let r = request {
            request = nil
            if let c = r.connection {
                c.session = nil
                c.close()
            }
            if let i = r.serverIndex { frontend.pool.release(i) }
        }
        let body = "cm-lbd: \(status.code) \(status.reasonPhrase): \(message)\n"
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        headers.add(name: "Content-Length", value: String(body.utf8.count))
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            closing = true
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        } else {
            nextPipelined()
        }
    }

    // MARK: Headers

    /// Headers that apply to one connection only (RFC 9110 section 7.6.1), including those
    /// the Connection header names; framing (Content-Length, Transfer-Encoding) stays.
    static func endToEnd(_ headers: HTTPHeaders) -> HTTPHeaders {
        var out = headers
        // Most requests carry none of them: look before touching (no copy then).
        for name in hopByHop where out.contains(name: name) { out.remove(name: name) }
        for token in headers[canonicalForm: "connection"] {
            let name = String(token)
            if name.lowercased() != "content-length", name.lowercased() != "transfer-encoding", out.contains(name: name) { out.remove(name: name) }
        }
        return out
    }

    static let hopByHop = ["connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade", "proxy-authenticate", "proxy-authorization"]

    static func isIdempotent(_ method: HTTPMethod) -> Bool {
        switch method {
        case .GET, .HEAD, .OPTIONS, .PUT, .DELETE, .TRACE: true
        default: false
        }
    }

    /// Request line and header bytes as sent.
    static func headSize(_ head: HTTPRequestHead) -> Int {
        var n = head.method.rawValue.utf8.count + head.uri.utf8.count + 12
        for (name, value) in head.headers { n += name.utf8.count + value.utf8.count + 4 }
        return n
    }
}
