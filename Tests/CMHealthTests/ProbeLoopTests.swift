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
    /// A loop of the tests' own: thousands of probes a second on one of the shared group's
    /// loops would starve the other suites' channels on it (seen: an ICMP echo timing out).
    static let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

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
        let loop = ProbeLoop(engine: engine, loop: Self.group.next(), limit: 100)
        let refused = Self.ids(50, "refused"), connected = Self.ids(2, "open")
        var set: [CheckID: ProbeLoop.Probe] = [:]
        for id in refused { set[id] = probe(.tcp(local, port: Int(closed.port)), every: .milliseconds(100)) }
        for id in connected { set[id] = probe(.tcp(local, port: Int(open.port)), every: .milliseconds(100)) }
        let started = ContinuousClock.now
        loop.update(set: set, remove: [])
        let (outcomes, batches) = await Self.collect(loop, seconds: 1.0)
        // Until the stream ended: with every suite running at once the second asked for was
        // seen to last seven.
        let elapsed = ContinuousClock.now - started
        let perCheck = Dictionary(grouping: outcomes, by: \.id)
        #expect(perCheck.count == 52)
        // One probe per 100 ms at most (a busy machine may manage fewer), and more than one.
        let most = Int(elapsed / .milliseconds(100)) + 2
        for (id, list) in perCheck { #expect((2...most).contains(list.count), "\(id): \(list.count) probes in \(elapsed)") }
        #expect(outcomes.filter { $0.id.check == "refused" }.allSatisfy { !$0.result.ok && $0.result.message == "connect: Connection refused" })
        // (A stall of seconds, seen with every suite at once, times some out.)
        #expect(outcomes.filter { $0.id.check == "open" }.contains { $0.result.ok }, "\(outcomes.filter { !$0.result.ok }.prefix(3).map(\.result.message))")
        // Up to 520 outcomes in a second, in batches of 20 ms: far fewer batches than outcomes.
        #expect(batches * 2 < outcomes.count, "\(outcomes.count) outcomes in \(batches) batches")
    }

    @Test func removedChecksStopAndChangedOnesDropTheOldProbesResult() async throws {
        guard let engine, let closed = ProbeTestSocket(.closed) else { return }
        let dir = NSTemporaryDirectory() + "cm-probeloop-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let loop = ProbeLoop(engine: engine, loop: Self.group.next(), limit: 100)
        let ids = Self.ids(3)
        // ids[0] and ids[1] run a command that says it started and ends once "go" exists;
        // ids[2] is a TCP check.
        func command(_ name: String) -> ProbeLoop.Probe {
            probe(.exec(argv: ["/bin/sh", "-c", "touch \(dir)/\(name); while [ ! -e \(dir)/go ]; do sleep 0.02; done"]),
                  every: .milliseconds(10), timeout: .seconds(60))
        }
        let tcp = probe(.tcp(local, port: Int(closed.port)), every: .milliseconds(50))
        loop.update(set: [ids[0]: command("a"), ids[1]: command("b"), ids[2]: tcp], remove: [])
        let started = ContinuousClock.now
        while !(FileManager.default.fileExists(atPath: "\(dir)/a") && FileManager.default.fileExists(atPath: "\(dir)/b")) {
            guard ContinuousClock.now - started < .seconds(30) else { Issue.record("the commands did not start"); return }
            try await Task.sleep(for: .milliseconds(10))
        }
        // ids[0] becomes a TCP check, ids[1] goes, ids[2] stays. The commands end after the
        // update reached the loop: their results come back through it, behind the update.
        loop.update(set: [ids[0]: tcp], remove: [ids[1]])
        FileManager.default.createFile(atPath: "\(dir)/go", contents: nil)
        let (outcomes, _) = await Self.collect(loop, seconds: 1.5)
        let of = { (id: CheckID) in outcomes.filter { $0.id == id }.map(\.result.message) }
        #expect(of(ids[1]).isEmpty, "a removed check was recorded: \(of(ids[1]))")
        #expect(of(ids[0]).allSatisfy { $0.hasPrefix("connect:") } && of(ids[0]).count >= 2, "the old command's result was recorded: \(Set(of(ids[0])))")
        #expect(of(ids[2]).count >= 2)
    }

    /// max_in_flight: three checks of a 200 ms command every 50 ms, each writing "+" when it
    /// starts and "-" when it ends. One at a time, then three.
    @Test func noMoreThanTheLimitRunAtOnce() async throws {
        guard let engine else { return }
        let dir = NSTemporaryDirectory() + "cm-probeloop-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let log = "\(dir)/log"
        let command = probe(.exec(argv: ["/bin/sh", "-c", "echo + >> \(log); sleep 0.2; echo - >> \(log)"]), every: .milliseconds(50), timeout: .seconds(30))
        /// The most commands running at once in the log's lines before and from `mark`.
        func mostRunning(mark: Int) -> (before: Int, after: Int, lines: Int) {
            let lines = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n")
            var running = 0, before = 0, after = 0
            for (i, line) in lines.enumerated() {
                running += line == "+" ? 1 : -1
                if i < mark { before = max(before, running) } else { after = max(after, running) }
            }
            return (before, after, lines.count)
        }
        let loop = ProbeLoop(engine: engine, loop: Self.group.next(), limit: 1)
        defer { loop.stop() }
        loop.update(set: Dictionary(uniqueKeysWithValues: Self.ids(3).map { ($0, command) }), remove: [])
        let started = ContinuousClock.now
        while mostRunning(mark: .max).lines < 6, ContinuousClock.now - started < .seconds(30) { try await Task.sleep(for: .milliseconds(50)) }
        let mark = mostRunning(mark: .max).lines
        loop.setLimit(3)
        while mostRunning(mark: mark).after < 2, ContinuousClock.now - started < .seconds(30) { try await Task.sleep(for: .milliseconds(50)) }
        let most = mostRunning(mark: mark)
        #expect(mark >= 6 && most.before == 1, "at a limit of 1: \(most)")
        #expect((2...3).contains(most.after), "at a limit of 3: \(most)")
    }

    /// Probes that end at once (a port out of range) end inside the loop that starts them:
    /// with a hundred due in each tick at a limit of one, they must neither recurse nor stop.
    @Test func probesThatEndAtOnceDoNotRecurse() async {
        guard let engine else { return }
        let loop = ProbeLoop(engine: engine, loop: Self.group.next(), limit: 1)
        loop.update(set: Dictionary(uniqueKeysWithValues: Self.ids(5000).map { ($0, probe(.tcp(local, port: 70000), every: .seconds(1))) }), remove: [])
        let (outcomes, _) = await Self.collect(loop, seconds: 1.2)
        #expect(outcomes.count >= 4000, "\(outcomes.count)")
        #expect(outcomes.allSatisfy { $0.result.message == "tcp: port 70000 out of range" })
    }
}
