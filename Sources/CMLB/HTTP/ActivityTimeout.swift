import NIOCore

/// Fires `IdleStateHandler.IdleStateEvent.all` once a channel has had no read and no write
/// for `timeout` (client_timeout, server_timeout). NIO's IdleStateHandler does the same
/// with a clock reading per read and a promise and callback per write — three per response
/// on each side of a proxied request. This one counts reads and writes and looks at the
/// count every timeout / 8, so the event comes between `timeout` and 5/4 of it after the
/// last read or write.
final class ActivityTimeout: ChannelDuplexHandler {
    typealias InboundIn = NIOAny
    typealias OutboundIn = NIOAny

    let timeout: TimeAmount
    private var activity: UInt64 = 0
    private var seen: UInt64 = 0
    private var lastActive = NIODeadline.now()
    private var check: Scheduled<Void>?

    init(timeout: Duration) { self.timeout = TimeAmount(timeout) }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) { stop() }

    func channelActive(context: ChannelHandlerContext) {
        start(context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        stop()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        activity &+= 1
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        activity &+= 1
        context.write(data, promise: promise)
    }

    private func start(_ context: ChannelHandlerContext) {
        guard check == nil else { return }
        seen = activity
        lastActive = .now()
        schedule(context)
    }

    private func stop() {
        check?.cancel()
        check = nil
    }

    private func schedule(_ context: ChannelHandlerContext) {
        let period = TimeAmount.nanoseconds(max(timeout.nanoseconds / 8, 10_000_000))
        check = context.eventLoop.assumeIsolated().scheduleTask(in: period) { [self] in
            guard check != nil else { return }
            let now = NIODeadline.now()
            if activity != seen {
                seen = activity
                lastActive = now
            } else if now - lastActive >= timeout {
                check = nil
                context.fireUserInboundEventTriggered(IdleStateHandler.IdleStateEvent.all)
                return
            }
            schedule(context)
        }
    }
}
