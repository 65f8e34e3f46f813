@testable import CMHealth
import CMTypes
import Foundation
import NIOPosix
import Testing

@Suite struct ProbeTimetableTests {
    @Test func keysComeOutDueEarliestFirstAndTiesInSchedulingOrder() {
        var t = ProbeTimetable<String>()
        t.schedule("c", at: 30)
        t.schedule("a", at: 10)
        t.schedule("b", at: 10)
        t.schedule("d", at: 40)
        #expect(t.nextDue() == 10 && t.count == 4)
        #expect(t.popDue(now: 9).isEmpty)
        #expect(t.popDue(now: 30).map(\.key) == ["a", "b", "c"])
        #expect(t.count == 1 && !t.contains("a") && t.contains("d"))
        #expect(t.nextDue() == 40)
    }

    @Test func schedulingAgainReplacesAndRemovedKeysNeverFire() {
        var t = ProbeTimetable<String>()
        t.schedule("a", at: 10)
        t.schedule("b", at: 20)
        t.schedule("a", at: 50)
        t.remove("b")
        #expect(t.nextDue() == 50 && t.count == 1)
        #expect(t.popDue(now: 100).map(\.key) == ["a"])
        #expect(t.nextDue() == nil)
    }

    /// Against a dictionary as the model, through enough replacing and removing to rebuild
    /// the heap many times.
    @Test func randomOperationsMatchAPlainModel() {
        var rng = SplitMix64(seed: 42)
        var t = ProbeTimetable<Int>()
        var model: [Int: Int64] = [:]
        var now: Int64 = 0
        for _ in 0..<20_000 {
            let key = Int.random(in: 0..<300, using: &rng)
            switch Int.random(in: 0..<10, using: &rng) {
            case 0..<6:
                let due = now + Int64.random(in: 0..<1_000, using: &rng)
                t.schedule(key, at: due)
                model[key] = due
            case 6..<8:
                t.remove(key)
                model[key] = nil
            default:
                now += Int64.random(in: 0..<200, using: &rng)
                let due = model.filter { $0.value <= now }
                let fired = t.popDue(now: now)
                #expect(Set(fired.map(\.key)) == Set(due.keys) && fired.count == due.count)
                #expect(fired.allSatisfy { due[$0.key] == $0.due } && fired.map(\.due) == fired.map(\.due).sorted())
                for (k, _) in fired { model[k] = nil }
            }
            #expect(t.count == model.count)
        }
        #expect(t.nextDue() == model.values.min())
    }
}

/// The probe loop on a real event loop, with real probes (TCP against sockets of the test,
/// exec of /bin/sleep).
@Suite struct ProbeLoopTests {
    let engine = try? ProbeEngine()
    let local = IPv4Address(127, 0, 0, 1)

    static func ids(_ n: Int, _ check: String = "c") -> [CheckID] {
        (0..<n).map { CheckID(check: check, node: NodeName(String(format: "n%04d", $0))) }
    }

    /// Every outcome for `seconds`, with the number of batches they came in.
    static func collect(_ loop: ProbeLoop, seconds: Double) async -> (outcomes: [ProbeOutcome], batches: Int) {
        await withTaskGroup(of: ([ProbeOutcome], Int).self) { group in
            group.addTask {
                var all: [ProbeOutcome] = [], batches = 0
                for await batch in loop.outcomes {
                    all += batch
                    batches += 1
                }
                return (all, batches)
            }
            try? await Task.sleep(for: .seconds(seconds))
            loop.stop()
            return await group.next()!
        }
    }

    func probe(_ spec: ProbeSpec, every interval: Duration, timeout: Duration = .seconds(1)) -> ProbeLoop.Probe {
        ProbeLoop.Probe(spec: spec, timeout: timeout, schedule: ProbeSchedule(interval: interval, jitterPercent: 0))
    }

    @Test func everyCheckIsProbedEachIntervalAndResultsComeInBatches() async throws {
        guard let engine, let closed = ProbeTestSocket(.closed), let open = ProbeTestSocket(.silent) else { return }
        let loop = ProbeLoop(engine: engine, loop: MultiThreadedEventLoopGroup.singleton.next(), limit: 100)
        let refused = Self.ids(50, "refused"), connected = Self.ids(2, "open")
        var set: [CheckID: ProbeLoop.Probe] = [:]
        for id in refused { set[id] = probe(.tcp(local, port: Int(closed.port)), every: .milliseconds(100)) }
        for id in connected { set[id] = probe(.tcp(local, port: Int(open.port)), every: .milliseconds(100)) }
        loop.update(set: set, remove: [])
        let (outcomes, batches) = await Self.collect(loop, seconds: 1.0)
        let perCheck = Dictionary(grouping: outcomes, by: \.id)
        #expect(perCheck.count == 52)
        // 10 probes each in 1 s at 100 ms. A machine busy with every other suite was seen to
        // manage 3; none may add any.
        for (id, list) in perCheck { #expect((2...11).contains(list.count), "\(id): \(list.count) probes") }
        #expect(outcomes.filter { $0.id.check == "refused" }.allSatisfy { !$0.result.ok && $0.result.message == "connect: Connection refused" })
        #expect(outcomes.filter { $0.id.check == "open" }.allSatisfy { $0.result.ok }, "\(outcomes.filter { !$0.result.ok }.prefix(3).map(\.result.message))")
        // Up to 520 outcomes in a second, in batches of 20 ms: far fewer batches than outcomes.
        #expect(batches * 2 < outcomes.count, "\(outcomes.count) outcomes in \(batches) batches")
    }

    @Test func removedChecksStopAndChangedOnesDropTheOldProbesResult() async throws {
        guard let engine, let closed = ProbeTestSocket(.closed) else { return }
        let loop = ProbeLoop(engine: engine, loop: MultiThreadedEventLoopGroup.singleton.next(), limit: 100)
        let ids = Self.ids(3)
        // ids[0] and ids[1] start a 1.5 s command within their first 10 ms; ids[2] is a TCP check.
        let command = probe(.exec(argv: ["/bin/sleep", "1.5"]), every: .milliseconds(10))
        loop.update(set: [ids[0]: command, ids[1]: command, ids[2]: probe(.tcp(local, port: Int(closed.port)), every: .milliseconds(50))], remove: [])
        try await Task.sleep(for: .milliseconds(100))
        // ids[0] becomes a TCP check, ids[1] goes, ids[2] stays; both commands end at 1.5 s.
        loop.update(set: [ids[0]: probe(.tcp(local, port: Int(closed.port)), every: .milliseconds(50))], remove: [ids[1]])
        let (outcomes, _) = await Self.collect(loop, seconds: 2.5)
        let of = { (id: CheckID) in outcomes.filter { $0.id == id }.map(\.result.message) }
        #expect(of(ids[1]).isEmpty, "a removed check was recorded: \(of(ids[1]))")
        #expect(of(ids[0]).allSatisfy { $0.hasPrefix("connect:") } && of(ids[0]).count >= 5, "the old command's result was recorded: \(Set(of(ids[0])))")
        #expect(of(ids[2]).count >= 5)
    }

    /// max_in_flight: three checks of a 200 ms command every 50 ms. One at a time, at most one
    /// ends per 200 ms; raised to three at once, more end in the same time.
    @Test func noMoreThanTheLimitRunAtOnce() async throws {
        guard let engine else { return }
        let checks = Dictionary(uniqueKeysWithValues: Self.ids(3).map { ($0, probe(.exec(argv: ["/bin/sleep", "0.2"]), every: .milliseconds(50))) })
        let one = ProbeLoop(engine: engine, loop: MultiThreadedEventLoopGroup.singleton.next(), limit: 1)
        one.update(set: checks, remove: [])
        let started = ContinuousClock.now
        let (limited, _) = await Self.collect(one, seconds: 1.2)
        let elapsed = ContinuousClock.now - started
        #expect(Double(limited.count) <= elapsed / .milliseconds(200) + 1, "\(limited.count) commands ended in \(elapsed) at a limit of 1")
        let raised = ProbeLoop(engine: engine, loop: MultiThreadedEventLoopGroup.singleton.next(), limit: 1)
        raised.setLimit(3)
        raised.update(set: checks, remove: [])
        let (more, _) = await Self.collect(raised, seconds: 1.2)
        #expect(more.count > limited.count, "raising the limit did not let more run (\(more.count) vs \(limited.count))")
        #expect(limited.allSatisfy(\.result.ok) && more.allSatisfy(\.result.ok))
    }

    /// Probes that end at once (a port out of range) end inside the loop that starts them:
    /// thousands of them at a limit of one must neither recurse nor stop.
    @Test func probesThatEndAtOnceDoNotRecurse() async {
        guard let engine else { return }
        let loop = ProbeLoop(engine: engine, loop: MultiThreadedEventLoopGroup.singleton.next(), limit: 1)
        loop.update(set: Dictionary(uniqueKeysWithValues: Self.ids(5000).map { ($0, probe(.tcp(local, port: 70000), every: .milliseconds(10))) }), remove: [])
        let (outcomes, _) = await Self.collect(loop, seconds: 0.5)
        #expect(outcomes.count >= 5000, "\(outcomes.count)")
        #expect(outcomes.allSatisfy { $0.result.message == "tcp: port 70000 out of range" })
    }
}
