import CMTypes
import NIOCore

/// One probe's outcome, as the loop hands it to the monitor.
public struct ProbeOutcome: Sendable {
    public let id: CheckID
    public let result: ProbeResult
}

/// Every check's probes, fired by one timer on one event loop, with the results handed to
/// the monitor in batches.
///
/// Why not a task per check: at 2,000 checks a second, a task sleeping on its own timer and
/// hopping between the cooperative pool, the NIO loop and the monitor actor cost about five
/// thread wake-ups per probe and 4.5× HAProxy's CPU (docs/benchmarks.md). Here a probe costs
/// what it must: the timer that fires it (shared with every probe due in the same tick), its
/// engine's work (TCP, HTTP and exec on their engines' threads, ICMP on this loop; each comes
/// back with a promise), and a slot in a batch the monitor takes every `batchWindow`.
///
/// State lives on the loop: every method hops there, and nothing else touches it (hence
/// `@unchecked Sendable`).
public final class ProbeLoop: @unchecked Sendable {
    /// What to probe and when, for one check instance.
    public struct Probe: Sendable, Equatable {
        public var spec: ProbeSpec
        public var timeout: Duration
        public var schedule: ProbeSchedule

        public init(spec: ProbeSpec, timeout: Duration, schedule: ProbeSchedule) {
            self.spec = spec
            self.timeout = timeout
            self.schedule = schedule
        }
    }

    /// The timer fires on multiples of this: probes due within one tick start together, and
    /// each engine's thread wakes once for them rather than once each. bench-healthd: 2,000
    /// checks/s cost 2.24× HAProxy's CPU on a 5 ms tick and 1.56× on 20 ms (median of five
    /// rounds). A probe starts up to one tick late; its interval is kept (the next one is due
    /// an interval after this one was), so a 100 ms check still runs ten times a second.
    static let tick: Int64 = 20_000_000
    /// How long results wait to go to the monitor together: the delay this adds to a
    /// transition is nothing against rise/fall counting at one probe per interval.
    static let batchWindow = TimeAmount.milliseconds(20)

    /// Batches of outcomes, in the order the probes ended; one consumer (the monitor).
    public let outcomes: AsyncStream<[ProbeOutcome]>
    private let sink: AsyncStream<[ProbeOutcome]>.Continuation
    let loop: any EventLoop
    let engine: ProbeEngine

    // Everything below: on `loop` only.
    private struct Entry {
        var probe: Probe
        /// Changes when the check is set again: a probe of the old settings still running
        /// then ends unrecorded.
        var generation: UInt64
    }

    private var entries: [CheckID: Entry] = [:]
    private var timetable = ProbeTimetable<CheckID>()
    private var armed: (due: Int64, timer: Scheduled<Void>)?
    /// Probes due while `limit` were running, in the order they fell due.
    private var waiting: [(id: CheckID, generation: UInt64, due: Int64)] = []
    private var waitingHead = 0
    private var running = 0
    private var limit: Int
    private var pending: [ProbeOutcome] = []
    private var flushScheduled = false
    private var generation: UInt64 = 0
    /// `startWaiting` is running: a probe that ends at once (a refused port, a bad spec)
    /// ends inside it, and must not start the next one from there (recursion as deep as the
    /// queue is long).
    private var starting = false
    private var rng = SystemRandomNumberGenerator()

    /// - Parameter limit: probes running at once ([healthd] max_in_flight); the rest wait
    ///   their turn in the order they fell due.
    public init(engine: ProbeEngine, loop: any EventLoop, limit: Int) {
        self.engine = engine
        self.loop = loop
        self.limit = max(1, limit)
        (outcomes, sink) = AsyncStream.makeStream(of: [ProbeOutcome].self)
    }

    /// Starts probing `set` (a check already probed with other settings starts again, its
    /// first probe at a random point of its interval, like a new one) and stops `remove`.
    public func update(set: [CheckID: Probe], remove: [CheckID]) {
        loop.execute {
            for id in remove {
                self.entries[id] = nil
                self.timetable.remove(id)
            }
            let now = Self.now()
            for (id, probe) in set {
                self.generation += 1
                self.entries[id] = Entry(probe: probe, generation: self.generation)
                self.timetable.schedule(id, at: now + clampedNanoseconds(probe.schedule.firstDelay(using: &self.rng)))
            }
            self.arm()
        }
    }

    /// Raises or lowers how many probes run at once; running ones are not interrupted.
    public func setLimit(_ limit: Int) {
        loop.execute {
            self.limit = max(1, limit)
            self.startWaiting()
        }
    }

    /// Stops every check; results of probes still running are dropped. The stream ends.
    public func stop() {
        loop.execute {
            self.entries.removeAll()
            self.timetable.removeAll()
            self.waiting.removeAll()
            self.waitingHead = 0
            self.armed?.timer.cancel()
            self.armed = nil
            self.sink.finish()
        }
    }

    // MARK: On the loop

    static func now() -> Int64 { Int64(NIODeadline.now().uptimeNanoseconds) }

    /// Keeps the one timer set for the earliest due time, rounded up to the tick.
    private func arm() {
        guard let next = timetable.nextDue() else {
            armed?.timer.cancel()
            armed = nil
            return
        }
        let due = (next + Self.tick - 1) / Self.tick * Self.tick
        if let armed, armed.due <= due { return }
        armed?.timer.cancel()
        let timer = loop.scheduleTask(deadline: .uptimeNanoseconds(UInt64(max(0, due)))) { self.fire() }
        armed = (due, timer)
    }

    private func fire() {
        armed = nil
        let now = Self.now()
        // Each keeps the time it was due, not the tick's: the next is due one interval after
        // that, so the tick delays probes without stretching intervals.
        for (id, due) in timetable.popDue(now: now) {
            guard let entry = entries[id] else { continue }
            waiting.append((id, entry.generation, due))
        }
        startWaiting()
        arm()
    }

    private func startWaiting() {
        guard !starting else { return }
        starting = true
        defer { starting = false }
        while running < limit, waitingHead < waiting.count {
            let (id, generation, due) = waiting[waitingHead]
            waitingHead += 1
            guard let entry = entries[id], entry.generation == generation else { continue }
            start(id, entry, due: due)
        }
        if waitingHead == waiting.count {
            waiting.removeAll(keepingCapacity: true)
            waitingHead = 0
        } else if waitingHead > 1024, waitingHead * 2 > waiting.count {
            waiting.removeFirst(waitingHead)
            waitingHead = 0
        }
    }

    private func start(_ id: CheckID, _ entry: Entry, due: Int64) {
        running += 1
        engine.start(entry.probe.spec, timeout: entry.probe.timeout, on: loop).whenSuccess { result in
            self.running -= 1
            self.finished(id, generation: entry.generation, due: due, result)
            self.startWaiting()
        }
    }

    private func finished(_ id: CheckID, generation: UInt64, due: Int64, _ result: ProbeResult) {
        guard let entry = entries[id], entry.generation == generation else { return }
        pending.append(ProbeOutcome(id: id, result: result))
        if !flushScheduled {
            flushScheduled = true
            loop.scheduleTask(in: Self.batchWindow) { self.flush() }
        }
        // The next probe is due one interval after this one fell due, so a slow probe (or a
        // wait for a slot) does not stretch the interval. One that ran past its next beat
        // skips it rather than going again at once: on a machine too busy to keep up, going
        // at once made every late check probe on every tick, which made the loop later still.
        let now = Self.now()
        let interval = max(1, clampedNanoseconds(entry.probe.schedule.nextDelay(using: &rng)))
        var next = due + interval
        if next < now { next += ((now - next) / interval + 1) * interval }
        timetable.schedule(id, at: next)
        arm()
    }

    private func flush() {
        flushScheduled = false
        guard !pending.isEmpty else { return }
        sink.yield(pending)
        pending.removeAll(keepingCapacity: true)
    }
}
