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
        /// Every open client connection, for quiescing them on stop.
        var children: [ObjectIdentifier: Channel] = [:]
        /// Stopping: listeners held back at the limit stay so.
        var stopped = false
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

    /// No listener accepts again (the daemon stops).
    func stopAccepting() {
        state.withLock {
            $0.stopped = true
            $0.waiting.removeAll()
        }
    }

    fileprivate func opened(_ child: Channel) {
        state.withLock {
            $0.active += 1
            $0.children[ObjectIdentifier(child)] = child
        }
    }

    fileprivate func closed(_ child: Channel) {
        let resume = state.withLock { s -> [@Sendable () -> Void] in
            s.active -= 1
            s.children[ObjectIdentifier(child)] = nil
            guard s.active < s.limit else { return [] }
            defer { s.waiting.removeAll() }
            return s.waiting
        }
        resume.forEach { $0() }
    }

    /// For connections that are not NIO channels (TCP mode's own loops): counts one when
    /// below the limit and returns true; otherwise `resume` runs once a slot frees.
    func tryOpen(orWait resume: @escaping @Sendable () -> Void) -> Bool {
        state.withLock { s in
            if s.stopped { return false }
            if s.active < s.limit {
                s.active += 1
                return true
            }
            s.waiting.append(resume)
            return false
        }
    }

    /// A connection counted by `tryOpen` is closed.
    func closeOne() {
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
            if s.stopped { return false }
            if s.active < s.limit { return true }
            s.waiting.append(resume)
            return false
        }
    }

    func handler() -> AcceptLimitHandler { AcceptLimitHandler(limiter: self) }

    /// Waits (at most a second) until every accepted connection is active, i.e. through
    /// NIO's child setup; see `FrontendListener.close`.
    func waitUntilAcceptedAreSetUp() async {
        let deadline = ContinuousClock.now + .seconds(1)
        while ContinuousClock.now < deadline {
            let pending = state.withLock { $0.children.values.contains { !$0.isActive } }
            if !pending { return }
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Asks every open connection to finish: HTTP ones close after the response in progress
    /// (idle ones at once, NIOHTTP1's pipelining handler does this), TCP ones run to their end.
    func quiesceAll() {
        let children = state.withLock { Array($0.children.values) }
        for child in children {
            child.eventLoop.execute { child.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }
        }
    }
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
        limiter.opened(child)
        let limiter = self.limiter
        child.closeFuture.whenComplete { _ in limiter.closed(child) }
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
