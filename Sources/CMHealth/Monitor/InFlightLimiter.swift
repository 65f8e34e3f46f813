/// Bounds how many probes run at once ([healthd] max_in_flight). Waiters are served in
/// arrival order, so a burst cannot starve the checks that were first in line.
public actor InFlightLimiter {
    private var available: Int
    private var waiters: [CheckedContinuation<Void, Never>] = []
    private var head = 0

    public init(limit: Int) { available = max(1, limit) }

    public func acquire() async {
        if available > 0 {
            available -= 1
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    public func release() {
        if head < waiters.count {
            let next = waiters[head]
            head += 1
            if head > 1024, head * 2 > waiters.count {
                waiters.removeFirst(head)
                head = 0
            }
            next.resume()
        } else {
            available += 1
        }
    }

    /// Raises or lowers the limit (reload); running probes are not interrupted.
    public func resize(by delta: Int) {
        if delta > 0 { for _ in 0..<delta { release() } } else { available += delta }
    }

    public func run<T: Sendable>(_ work: @Sendable () async -> T) async -> T {
        await acquire()
        let result = await work()
        release()
        return result
    }
}
