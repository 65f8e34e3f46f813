import CMConfig
import CMTypes
import Logging
import NIOCore
import NIOPosix

/// One client of a TCP-mode frontend. The accepted channel reads nothing (autoRead off)
/// until a server is connected: a connect that fails or times out marks that server failed
/// and the next one is tried, so the client never notices; then the two channels are glued.
final class TCPSession: ChannelInboundHandler {
    typealias InboundIn = NIOAny

    let frontend: FrontendRuntime
    private var serverIndex: Int?
    private var tried: Set<Int> = []
    private var clientGone = false

    init(frontend: FrontendRuntime) { self.frontend = frontend }

    func channelActive(context: ChannelHandlerContext) {
        frontend.counters.opened()
        frontend.counters.request()
        connectNext(context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        clientGone = true
        frontend.counters.closed()
        if let i = serverIndex {
            frontend.pool.release(i)
            serverIndex = nil
        }
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func connectNext(context: ChannelHandlerContext) {
        let pool = frontend.pool
        let client = context.channel.remoteAddress
        guard let (index, server) = pool.acquire(key: FrontendRuntime.key(client), excluding: tried) else {
            frontend.counters.error()
            frontend.noServer(tried: tried.count)
            context.close(promise: nil)
            return
        }
        tried.insert(index)
        serverIndex = index
        let config = frontend.config
        let address: SocketAddress
        do {
            address = try SocketAddress(ipAddress: server.address.address.description, port: Int(server.address.port))
        } catch {
            context.close(promise: nil)
            return
        }
        ClientBootstrap(group: context.eventLoop)
            .connectTimeout(TimeAmount(config.connectTimeout))
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(allTimeout: TimeAmount(config.serverTimeout)))
                    try channel.pipeline.syncOperations.addHandler(CloseOnIdle())
                }
            }
            .connect(to: address)
            .assumeIsolated()
            .whenComplete { result in
                switch result {
                case .success(let serverChannel):
                    pool.connected(index)
                    guard !self.clientGone else {
                        serverChannel.close(promise: nil)
                        return
                    }
                    self.glue(context: context, server: serverChannel, client: client)
                case .failure(let error):
                    let counted = self.serverIndex == index
                    if counted { self.serverIndex = nil }
                    self.frontend.connectFailed(index: index, server: server, error: error, wasCounted: counted)
                    guard !self.clientGone else { return }
                    if self.tried.count <= pool.config.retries {
                        self.frontend.counters.retry()
                        self.connectNext(context: context)
                    } else {
                        self.frontend.counters.error()
                        context.close(promise: nil)
                    }
                }
            }
    }

    private func glue(context: ChannelHandlerContext, server: Channel, client: SocketAddress?) {
        let (clientSide, serverSide) = GlueHandler.matchedPair()
        do {
            try context.pipeline.syncOperations.addHandler(clientSide)
            try server.pipeline.syncOperations.addHandler(serverSide)
        } catch {
            server.close(promise: nil)
            context.close(promise: nil)
            return
        }
        if frontend.config.proxyProtocol, let header = ProxyProtocol.v2Header(client: client, local: context.channel.localAddress) {
            server.writeAndFlush(ByteBuffer(bytes: header), promise: nil)
        }
        context.channel.setOption(.autoRead, value: true).whenFailure { _ in }
    }
}

/// Closes the channel when its IdleStateHandler reports the timeout.
final class CloseOnIdle: ChannelInboundHandler {
    typealias InboundIn = NIOAny

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}

/// The PROXY protocol version 2 header (haproxy's proxy-protocol.txt, section 2.2) for a TCP
/// connection over IPv4: the server learns the client's address and port.
enum ProxyProtocol {
    static let signature: [UInt8] = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]

    static func v2Header(client: SocketAddress?, local: SocketAddress?) -> [UInt8]? {
        guard case .v4(let c) = client, case .v4(let l) = local else { return nil }
        var h = signature
        h += [0x21, 0x11, 0x00, 12]  // version 2, PROXY; TCP over IPv4; 12 bytes of addresses
        withUnsafeBytes(of: c.address.sin_addr.s_addr) { h += $0 }  // network order already
        withUnsafeBytes(of: l.address.sin_addr.s_addr) { h += $0 }
        withUnsafeBytes(of: c.address.sin_port) { h += $0 }
        withUnsafeBytes(of: l.address.sin_port) { h += $0 }
        return h
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let c = duration.components
        self = .nanoseconds(c.seconds * 1_000_000_000 + c.attoseconds / 1_000_000_000)
    }
}
