import Synchronization

/// Named event counters shown by `cmctl pxe status`.
final class Counters: Sendable {
    private let values = Mutex<[String: Int]>([:])

    func add(_ name: String, _ n: Int = 1) { values.withLock { $0[name, default: 0] += n } }
    func value(_ name: String) -> Int { values.withLock { $0[name] ?? 0 } }
    var snapshot: [String: Int] { values.withLock { $0 } }
}

/// A stop flag threads poll.
final class Flag: Sendable {
    private let raised = Atomic<Bool>(false)
    func set() { raised.store(true, ordering: .releasing) }
    var isSet: Bool { raised.load(ordering: .acquiring) }
}
