import Foundation
import Synchronization

/// Answers of the daemons kept and shared: thirty-two browsers asking for the overview at once
/// cost cm-healthd one list of its checks, not thirty-two, and none of them waits for it while
/// a recent answer is at hand.
/// - An answer younger than `maxAge` is used as it is.
/// - An older one, up to `maxStale`, is used too while a fetch in the background replaces it
///   (one fetch at a time per key).
/// - After `invalidate` (the daemon reported a change: EventRelay calls it with the event's
///   topic) a request waits for an answer fetched after that moment, so a live page never
///   refreshes into the state from before the event.
public final class AnswerCache: Sendable {
    struct Entry {
        var value: (any Sendable)?
        /// When the fetch that gave `value` started.
        var fetchedAt: ContinuousClock.Instant?
        var inFlight: Task<any Sendable, Never>?
        var inFlightStarted: ContinuousClock.Instant?
        var invalidatedAt: ContinuousClock.Instant?

        /// The value, if nothing it predates has been invalidated.
        func usable() -> (value: any Sendable, at: ContinuousClock.Instant)? {
            guard let value, let fetchedAt else { return nil }
            if let invalidatedAt, fetchedAt <= invalidatedAt { return nil }
            return (value, fetchedAt)
        }
    }

    let entries = Mutex<[String: Entry]>([:])
    public let maxAge: Duration
    public let maxStale: Duration
    /// Keys come from requests too (a node's name, a chart's series): beyond this many, the
    /// entries no fetch is running for are dropped.
    public let capacity: Int

    public init(maxAge: Duration = .seconds(1), maxStale: Duration = .seconds(10), capacity: Int = 4096) {
        self.maxAge = maxAge
        self.maxStale = max(maxAge, maxStale)
        self.capacity = capacity
    }

    var count: Int { entries.withLock { $0.count } }

    enum Step {
        case value(any Sendable)
        case wait(Task<any Sendable, Never>)
    }

    /// The answer under `key` as the rules above allow, else `fetch`'s. A key holds one type.
    public func get<T: Sendable>(_ key: String, _ fetch: @escaping @Sendable () async -> T) async -> T {
        let now = ContinuousClock.now
        let step = entries.withLock { e -> Step in
            if e[key] == nil, e.count >= capacity { e = e.filter { $0.value.inFlight != nil } }
            var entry = e[key] ?? Entry()
            defer { e[key] = entry }
            let usable = entry.usable()
            if let usable, now - usable.at < maxAge { return .value(usable.value) }
            // A fetch already running serves unless it began before an invalidation.
            var running = entry.inFlight
            if let started = entry.inFlightStarted, let invalidated = entry.invalidatedAt, started <= invalidated { running = nil }
            let task = running ?? start(key, fetch, now: now, entry: &entry)
            if let usable, now - usable.at < maxStale { return .value(usable.value) }
            return .wait(task)
        }
        switch step {
        case .value(let v):
            if let v = v as? T { return v }
        case .wait(let task):
            if let v = await task.value as? T { return v }
        }
        return await fetch()
    }

    private func start<T: Sendable>(_ key: String, _ fetch: @escaping @Sendable () async -> T, now: ContinuousClock.Instant,
                                    entry: inout Entry) -> Task<any Sendable, Never> {
        let task = Task<any Sendable, Never> {
            let value = await fetch()
            self.entries.withLock { e in
                guard var entry = e[key] else { return }
                if entry.fetchedAt.map({ $0 < now }) ?? true {
                    entry.value = value
                    entry.fetchedAt = now
                }
                if entry.inFlightStarted == now {
                    entry.inFlight = nil
                    entry.inFlightStarted = nil
                }
                e[key] = entry
            }
            return value
        }
        entry.inFlight = task
        entry.inFlightStarted = now
        return task
    }

    /// Marks the answers whose key starts with `prefix` out of date ("healthd." after a check
    /// changed): the next request for one waits for a fetch that starts after now.
    public func invalidate(prefix: String) {
        let now = ContinuousClock.now
        entries.withLock { e in
            for key in e.keys where key.hasPrefix(prefix) { e[key]?.invalidatedAt = now }
        }
    }
}

/// Rendered parts of a page kept per key (a node list's query) and the answer they were made
/// from (its id): thirty-two browsers on the same list cost one rendering per answer. Cleared
/// when full rather than aged: a key is a few hundred bytes, an entry one table.
public final class RenderCache: Sendable {
    let entries = Mutex<[String: (version: UInt64, html: HTML)]>([:])
    let capacity: Int

    public init(capacity: Int = 64) { self.capacity = capacity }

    public func get(_ key: String, version: UInt64, render: () -> HTML) -> HTML {
        if let e = entries.withLock({ $0[key] }), e.version == version { return e.html }
        let html = render()
        entries.withLock { e in
            if e.count >= capacity, e[key] == nil { e.removeAll(keepingCapacity: true) }
            e[key] = (version, html)
        }
        return html
    }

    var count: Int { entries.withLock { $0.count } }
}
