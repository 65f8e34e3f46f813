import Synchronization

/// `[lbd] max_connections` over all frontends, and a frontend's own `max_connections`: at the
/// limit the listeners stop accepting, so further clients wait in the kernel's listen queue
/// instead of being refused, and accepting resumes as connections close. A frontend's limiter
/// stops only its own listener (HAProxy's frontend `maxconn`): the others go on accepting.
final class ConnectionLimiter: Sendable {
    private struct State {
        var limit: Int
        var active = 0
        /// Listeners that stopped reading, resumed when a slot frees.
        var waiting: [@Sendable () -> Void] = []
        /// Stopping: listeners held back at the limit stay so.
        var stopped = false
        /// Times accepting stopped at the limit (one per filling up, not per loop that saw it).
        var full = 0
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

    /// Times the limit was reached and accepting stopped, since the limiter was made.
    var timesFull: Int { state.withLock { $0.full } }

    /// No listener accepts again (the daemon stops).
    func stopAccepting() {
        state.withLock {
            $0.stopped = true
            $0.waiting.removeAll()
        }
    }

    /// Counts one connection when below the limit and returns true; otherwise `resume` runs
    /// once a slot frees.
    func tryOpen(orWait resume: @escaping @Sendable () -> Void) -> Bool {
        state.withLock { s in
            if s.stopped { return false }
            if s.active < s.limit {
                s.active += 1
                return true
            }
            if s.waiting.isEmpty { s.full += 1 }
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
}
