import NIOCore
import Synchronization

/// Fans events out to subscribed connections. Each event is encoded once; every subscriber
/// gets the same bytes. A subscriber that falls more than `bufferLimit` events behind loses
/// the oldest ones (counted) rather than making the daemon hold unbounded memory.
public final class EventHub: Sendable {
    public struct Subscription: Sendable {
        public let id: UInt64
        public let events: AsyncStream<ByteBuffer>
    }

    private struct Subscriber {
        var topics: Set<String>
        var continuation: AsyncStream<ByteBuffer>.Continuation
    }

    private struct State {
        var nextID: UInt64 = 1
        var nextEventID: UInt64 = 1
        var subscribers: [UInt64: Subscriber] = [:]
    }

    private let state = Mutex(State())
    private let dropped = Atomic<Int>(0)
    public let bufferLimit: Int

    public init(bufferLimit: Int = 10_000) { self.bufferLimit = bufferLimit }

    public var droppedEvents: Int { dropped.load(ordering: .relaxed) }
    public var subscriberCount: Int { state.withLock { $0.subscribers.count } }

    public func subscribe(topics: [String]) -> Subscription {
        let (stream, continuation) = AsyncStream.makeStream(of: ByteBuffer.self, bufferingPolicy: .bufferingNewest(bufferLimit))
        let id = state.withLock { state in
            let id = state.nextID
            state.nextID += 1
            state.subscribers[id] = Subscriber(topics: Set(topics), continuation: continuation)
            return id
        }
        continuation.onTermination = { [weak self] _ in self?.unsubscribe(id) }
        return Subscription(id: id, events: stream)
    }

    public func unsubscribe(_ id: UInt64) {
        let removed = state.withLock { $0.subscribers.removeValue(forKey: id) }
        removed?.continuation.finish()
    }

    /// Publishes an event of `type` on `topic`. Encoding errors are reported to the caller;
    /// nothing is sent then.
    public func publish<Body: Encodable & Sendable>(topic: String, type: String, body: Body) throws {
        let (eventID, targets) = state.withLock { state -> (UInt64, [AsyncStream<ByteBuffer>.Continuation]) in
            let id = state.nextEventID
            state.nextEventID += 1
            return (id, state.subscribers.values.filter { $0.topics.contains(topic) }.map(\.continuation))
        }
        guard !targets.isEmpty else { return }
        let payload = try ByteBuffer.envelope(EnvelopeHeader(kind: .event, id: eventID, type: type), body: body)
        for target in targets {
            if case .dropped = target.yield(payload) {
                dropped.add(1, ordering: .relaxed)
            }
        }
    }

    /// Ends every subscription (daemon shutdown).
    public func finishAll() {
        let all = state.withLock { state in
            defer { state.subscribers.removeAll() }
            return Array(state.subscribers.values)
        }
        for s in all { s.continuation.finish() }
    }
}
