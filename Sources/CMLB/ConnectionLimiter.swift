import NIOCore
import Synchronization

/// `[lbd] max_connections` over all frontends: at the limit the listeners stop accepting, so
/// further clients wait in the kernel's listen queue instead of being refused, and accepting
/// resumes as connections close.
final class ConnectionLimiter: Sendable {
    private struct State {
        var limit: Int
        var active = 0
        /// Listeners that stopped reading, resumed when a slot frees.
        var waiting: [@Sendable () -> Void] = []
    }

    private let state: Mutex<State>

    init(limit: Int) { state = Mutex(State(limit: limit)) }

    func setLimit(_ limit: Int) {
        let resume = state.withLock { s -> [@Sendable () -> Void] in
            s.limit = limit
            defer { s.waiting.removeAll() }
            return s.active < limit ? s.waiting : []
        }
        resume.forEach { $0() }
    }

    var active: Int { state.withLock { $0.active } }

    fileprivate func opened() { state.withLock { $0.active += 1 } }

    fileprivate func closed() {
        let resume = state.withLock { s -> [@Sendable () -> Void] in
            s.active -= 1
            guard s.active < s.limit else { return [] }
            defer { s.waiting.removeAll() }
            return s.waiting
        }
        resume.forEach { $0() }
    }

    /// True when below the limit; otherwise `resume` runs once a slot frees.
    fileprivate func admit(orWait resume: @escaping @Sendable () -> Void) -> Bool {
        state.withLock { s in
            if s.active < s.limit { return true }
            s.waiting.append(resume)
            return false
        }
    }

    func handler() -> AcceptLimitHandler { AcceptLimitHandler(limiter: self) }
}

/// On a listening channel: counts accepted connections and holds back accepting at the limit.
final class AcceptLimitHandler: ChannelDuplexHandler {
    typealias InboundIn = Channel
    typealias InboundOut = Channel
    typealias OutboundIn = NIOAny

    let limiter: ConnectionLimiter

    init(limiter: ConnectionLimiter) { self.limiter = limiter }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let child = unwrapInboundIn(data)
        limiter.opened()
        let limiter = self.limiter
        child.closeFuture.whenComplete { _ in limiter.closed() }
        context.fireChannelRead(data)
    }

    func read(context: ChannelHandlerContext) {
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        let loop = context.eventLoop
        if limiter.admit(orWait: { loop.execute { bound.value.read() } }) {
            context.read()
        }
    }
}
