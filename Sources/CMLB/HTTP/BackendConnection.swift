import CMTypes
import NIOCore
import NIOHTTP1
import NIOPosix

/// One keep-alive HTTP/1.1 connection to a server, owned by one event loop: leased to one
/// client session for one request, then back in that loop's idle list for the next.
final class BackendConnection {
    let channel: Channel
    let server: IPv4Endpoint
    /// The session whose request this connection carries now; nil while idle.
    weak var session: HTTPSession?
    /// Requests it has carried; above 0 it is a reused connection.
    var requests = 0
    /// False once the server said `Connection: close` or the response had no length.
    var reusable = true
    fileprivate(set) var closed = false

    init(channel: Channel, server: IPv4Endpoint) {
        self.channel = channel
        self.server = server
    }

    /// Connects on `loop`, with the HTTP client codec and an idle timeout.
    static func connect(to server: IPv4Endpoint, on loop: EventLoop, connectTimeout: Duration, idleTimeout: Duration,
                        pools: HTTPConnectionPools) -> EventLoopFuture<BackendConnection> {
        let address: SocketAddress
        do {
            address = try SocketAddress(ipAddress: server.address.description, port: Int(server.port))
        } catch {
            return loop.makeFailedFuture(error)
        }
        return ClientBootstrap(group: loop)
            .connectTimeout(TimeAmount(connectTimeout))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let ops = channel.pipeline.syncOperations
                    try ops.addHandler(ActivityTimeout(timeout: idleTimeout))
                    try ops.addHTTPClientHandlers(enableOutboundHeaderValidation: false)
                }
            }
            .connect(to: address)
            .flatMapThrowing { channel in
                let connection = BackendConnection(channel: channel, server: server)
                try channel.pipeline.syncOperations.addHandler(BackendHandler(connection: connection, pools: pools))
                return connection
            }
    }

    func send(_ part: HTTPClientRequestPart, flush: Bool) {
        if flush {
            channel.writeAndFlush(part, promise: nil)
        } else {
            channel.write(part, promise: nil)
        }
    }

    func close() {
        guard !closed else { return }
        closed = true
        channel.close(promise: nil)
    }
}

/// The backend channel's last handler: hands response parts to the leased session, and
/// tells it when the connection fails under it.
final class BackendHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    let connection: BackendConnection
    let pools: HTTPConnectionPools

    init(connection: BackendConnection, pools: HTTPConnectionPools) {
        self.connection = connection
        self.pools = pools
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        guard let session = connection.session else {
            // A response nobody asked for: the connection is out of step; drop it.
            connection.close()
            return
        }
        session.backendRead(part, from: connection)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        connection.session?.backendReadComplete()
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        connection.closed = true
        pools.remove(connection, loop: context.eventLoop)
        connection.session?.backendFailed(connection, error: ChannelError.eof)
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            if let session = connection.session {
                session.backendTimedOut(connection)
            } else {
                connection.close()  // idle in the pool for server_timeout: let it go
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        connection.session?.backendFailed(connection, error: error)
        connection.close()
    }
}

/// Idle keep-alive connections to servers, one list per event loop and server, touched only
/// on that loop (no lock on the request path).
final class HTTPConnectionPools: Sendable {
    private let pools: [ObjectIdentifier: NIOLoopBoundBox<LoopPool>]
    /// Idle connections kept per server and loop.
    static let maxIdlePerServer = 256

    final class LoopPool {
        var idle: [IPv4Endpoint: [BackendConnection]] = [:]
    }

    init(group: MultiThreadedEventLoopGroup) {
        var pools: [ObjectIdentifier: NIOLoopBoundBox<LoopPool>] = [:]
        for loop in group.makeIterator() {
            pools[ObjectIdentifier(loop)] = NIOLoopBoundBox.makeBoxSendingValue(LoopPool(), eventLoop: loop)
        }
        self.pools = pools
    }

    private func pool(_ loop: EventLoop) -> LoopPool? { pools[ObjectIdentifier(loop)]?.value }

    /// An idle connection to `server` on this loop, most recently used first.
    func take(_ server: IPv4Endpoint, loop: EventLoop) -> BackendConnection? {
        guard let p = pool(loop) else { return nil }
        while let c = p.idle[server]?.popLast() {
            if !c.closed, c.channel.isActive { return c }
        }
        return nil
    }

    func put(_ connection: BackendConnection, loop: EventLoop) {
        guard let p = pool(loop), !connection.closed, connection.reusable, connection.channel.isActive else {
            connection.close()
            return
        }
        connection.session = nil
        guard p.idle[connection.server]?.count ?? 0 < Self.maxIdlePerServer else {
            connection.close()
            return
        }
        // In place: a copy of the list taken out and put back would be copied (every
        // connection in it retained) on each request.
        p.idle[connection.server, default: []].append(connection)
    }

    func remove(_ connection: BackendConnection, loop: EventLoop) {
        guard let p = pool(loop) else { return }
        p.idle[connection.server]?.removeAll { $0 === connection }
    }

    /// Closes every idle connection (shutdown, or a server that left the configuration).
    func closeAll(on group: MultiThreadedEventLoopGroup) {
        for loop in group.makeIterator() {
            guard let bound = pools[ObjectIdentifier(loop)] else { continue }
            loop.execute {
                let p = bound.value
                let all = p.idle.values.flatMap { $0 }
                p.idle = [:]
                all.forEach { $0.close() }
            }
        }
    }
}
