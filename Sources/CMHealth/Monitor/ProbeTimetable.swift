/// When each check's next probe is due: a binary min-heap of due times, one live entry per
/// key. Pure: times are nanoseconds of whatever monotonic clock the caller reads, so tests
/// drive it without a clock.
///
/// Why a heap and not a hashed wheel: 10,000 checks make a heap 14 levels deep, a push or a
/// pop is a few dozen comparisons, and there is no slot size to choose or overflow list to
/// get right. What a wheel buys a timer — firing many entries per wake-up — the probe loop
/// gets by arming its one timer on a tick (`ProbeLoop.tick`) and popping everything due.
///
/// A key scheduled again or removed leaves its old entry in the heap, skipped when it comes
/// to the top (its order number is no longer the key's); the heap is rebuilt when such dead
/// entries outnumber the live ones.
struct ProbeTimetable<Key: Hashable> {
    private struct Entry {
        var due: Int64
        /// Unique, rising: breaks ties in scheduling order and tells live entries from dead.
        var order: UInt64
        var key: Key
    }

    private var heap: [Entry] = []
    private var live: [Key: UInt64] = [:]
    private var nextOrder: UInt64 = 0

    /// Keys with a due time.
    var count: Int { live.count }

    func contains(_ key: Key) -> Bool { live[key] != nil }

    /// Sets `key`'s due time, replacing the one it had.
    mutating func schedule(_ key: Key, at due: Int64) {
        nextOrder += 1
        live[key] = nextOrder
        push(Entry(due: due, order: nextOrder, key: key))
        if heap.count > 2 * live.count + 64 { compact() }
    }

    mutating func remove(_ key: Key) {
        live[key] = nil
        if heap.count > 2 * live.count + 64 { compact() }
    }

    mutating func removeAll() {
        heap.removeAll()
        live.removeAll()
    }

    /// The earliest due time, or nil when nothing is scheduled.
    mutating func nextDue() -> Int64? {
        dropDead()
        return heap.first?.due
    }

    /// Every key due at or before `now` with the time it was due, earliest first (ties in
    /// scheduling order); each leaves the timetable until it is scheduled again.
    mutating func popDue(now: Int64) -> [(key: Key, due: Int64)] {
        var out: [(key: Key, due: Int64)] = []
        while true {
            dropDead()
            guard let top = heap.first, top.due <= now else { return out }
            popTop()
            live[top.key] = nil
            out.append((top.key, top.due))
        }
    }

    // MARK: The heap

    private static func before(_ a: Entry, _ b: Entry) -> Bool { a.due < b.due || (a.due == b.due && a.order < b.order) }

    private mutating func dropDead() {
        while let top = heap.first, live[top.key] != top.order { popTop() }
    }

    private mutating func push(_ e: Entry) {
        heap.append(e)
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard Self.before(heap[i], heap[parent]) else { break }
            heap.swapAt(i, parent)
            i = parent
        }
    }

    private mutating func popTop() {
        let last = heap.removeLast()
        guard !heap.isEmpty else { return }
        heap[0] = last
        siftDown(0)
    }

    private mutating func siftDown(_ start: Int) {
        var i = start
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < heap.count, Self.before(heap[l], heap[m]) { m = l }
            if r < heap.count, Self.before(heap[r], heap[m]) { m = r }
            guard m != i else { return }
            heap.swapAt(i, m)
            i = m
        }
    }

    private mutating func compact() {
        heap.removeAll { live[$0.key] != $0.order }
        for i in stride(from: heap.count / 2 - 1, through: 0, by: -1) { siftDown(i) }
    }
}
