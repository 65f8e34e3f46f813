import Foundation
import Synchronization

/// Answers of the daemons kept for a moment and shared: thirty-two browsers asking for the
/// overview at once cost cm-healthd one list of its checks, not thirty-two. An answer is
/// reused for `maxAge`, and forgotten at once when the daemon reports a change (EventRelay
/// calls `invalidate` with the event's topic), so a live page never refreshes into an older
/// answer. Requests that arrive while an answer is being fetched wait for that fetch.
public final class AnswerCache: Sendable {
    struct Entry {
        var at: ContinuousClock.Instant
        var task: Task<any Sendable, Never>
    }

    let entries = Mutex<[String: Entry]>([:])
    public let maxAge: Duration

    public init(maxAge: Duration = .seconds(1)) {
        self.maxAge = maxAge
    }

    /// The answer under `key` if it is fresh, else `fetch`'s. A key always holds one type.
    public func get<T: Sendable>(_ key: String, _ fetch: @escaping @Sendable () async -> T) async -> T {
        let now = ContinuousClock.now
        let task = entries.withLock { e -> Task<any Sendable, Never> in
            if let entry = e[key], now - entry.at < maxAge { return entry.task }
            let task = Task<any Sendable, Never> { await fetch() }
            e[key] = Entry(at: now, task: task)
            return task
        }
        if let value = await task.value as? T { return value }
        return await fetch()
    }

    /// Forgets the answers whose key starts with `prefix` ("healthd." after a check changed).
    public func invalidate(prefix: String) {
        entries.withLock { e in
            for key in e.keys where key.hasPrefix(prefix) { e[key] = nil }
        }
    }
}
