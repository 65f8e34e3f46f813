import CMHealth
import Foundation
import Glibc
import Testing

@Suite struct ProbeExecTests {
    let exec: ExecProber

    init() throws { exec = try ExecProber() }

    @Test func trueAndFalse() async {
        let t = await exec.run(["/bin/true"], timeout: .seconds(2))
        #expect(t.ok && t.message == "exit 0", "\(t.message)")
        let f = await exec.run(["/bin/false"], timeout: .seconds(2))
        #expect(!f.ok && f.message == "exit 1", "\(f.message)")
    }

    @Test func firstLineOfOutputIsTheMessage() async {
        let r = await exec.run(["/bin/sh", "-c", "echo '  disk full  '; echo second; exit 2"], timeout: .seconds(2))
        #expect(!r.ok && r.message == "exit 2: disk full", "\(r.message)")
        let err = await exec.run(["/bin/sh", "-c", "echo oops >&2"], timeout: .seconds(2))
        #expect(err.ok && err.message == "exit 0: oops", "\(err.message)")
    }

    @Test func sleepIsKilledAfterTheTimeout() async {
        let start = ContinuousClock.now
        let r = await exec.run(["/bin/sleep", "60"], timeout: .milliseconds(200))
        let elapsed = ContinuousClock.now - start
        #expect(!r.ok && r.message == "killed after timeout 200ms", "\(r.message)")
        // Killed by the probe's timer, not ended by sleep's own 60 s. The bound is far from both:
        // two cores busy with every other suite have stretched 200 ms to 5.9 s.
        #expect(elapsed >= .milliseconds(190) && elapsed < .seconds(20), "\(elapsed)")
    }

    @Test func termIgnoredMeansKillAfterGrace() async {
        let start = ContinuousClock.now
        let r = await exec.run(["/bin/sh", "-c", "trap '' TERM; sleep 60"], timeout: .milliseconds(200))
        let elapsed = ContinuousClock.now - start
        #expect(!r.ok && r.message == "killed after timeout 200ms", "\(r.message)")
        // 200 ms, then the 1 s grace, then SIGKILL: far before the command's own 60 s end.
        #expect(elapsed >= .milliseconds(1150) && elapsed < .seconds(20), "\(elapsed)")
    }

    /// The whole process group goes: a hung command's children die with it, and what a
    /// command leaves running when it exits is killed too.
    @Test func childrenDieWithTheCommand() async {
        let late = await exec.run(["/bin/sh", "-c", "sleep 30 & echo $!; wait"], timeout: .milliseconds(300))
        #expect(late.message == "killed after timeout 300ms", "\(late.message)")
        let left = await exec.run(["/bin/sh", "-c", "sleep 30 & echo $!"], timeout: .seconds(2))
        #expect(left.ok, "\(left.message)")
        // The second one printed its child's pid: that child must be gone.
        let pidText = left.message.split(separator: " ").last.map(String.init) ?? ""
        if let pid = Int32(pidText) {
            let deadline = ContinuousClock.now + .seconds(1)
            while Self.isAlive(pid), ContinuousClock.now < deadline { usleep(10_000) }
            #expect(!Self.isAlive(pid), "background child \(pid) survived")
        } else {
            Issue.record("no pid in \(left.message)")
        }
    }

    /// Running or stopped; a zombie waiting for init to reap it is dead.
    static func isAlive(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[close...].dropFirst(2).first
        return state != "Z" && state != "X"
    }

    @Test func outputIsBoundedAndDrained() async {
        // 1 MB of output: the first 4 KiB are kept, the rest read and dropped.
        let r = await exec.run(["/bin/sh", "-c", "yes 'line' | head -c 1000000; exit 3"], timeout: .seconds(5))
        #expect(r.message == "exit 3: line", "\(r.message)")
    }

    @Test func missingCommandAndPathLookup() async {
        let missing = await exec.run(["/nonexistent/probe"], timeout: .seconds(1))
        #expect(!missing.ok && missing.message == "exec /nonexistent/probe: No such file or directory", "\(missing.message)")
        let empty = await exec.run([], timeout: .seconds(1))
        #expect(!empty.ok && empty.message == "exec: empty command")
        let viaPath = await exec.run(["true"], timeout: .seconds(1))
        #expect(viaPath.ok, "\(viaPath.message)")
    }

    @Test func environmentIsOnlyWhatWasGiven() async throws {
        let own = try ExecProber(environment: ["PATH=/usr/bin:/bin", "CM_TEST=1"])
        defer { own.shutdown() }
        let r = await own.run(["/bin/sh", "-c", "env | sort | tr '\\n' ' '"], timeout: .seconds(2))
        #expect(r.message.contains("CM_TEST=1") && !r.message.contains("HOME="), "\(r.message)")
    }

    @Test func runningCommandsAreBounded() async throws {
        let own = try ExecProber(maxRunning: 1)
        defer { own.shutdown() }
        async let first = own.run(["/bin/sleep", "3"], timeout: .seconds(5))
        // Asked again until the first has started (a busy machine may take a while to get
        // there); while it runs, the second is refused at once.
        var second = await own.run(["/bin/true"], timeout: .seconds(2))
        for _ in 0..<25 where second.ok {
            try await Task.sleep(for: .milliseconds(100))
            second = await own.run(["/bin/true"], timeout: .seconds(2))
        }
        #expect(!second.ok && second.message == "exec: too many commands running (1)", "\(second.message)")
        let r = await first
        #expect(r.ok, "\(r.message)")
    }

    @Test func shutdownKillsWhatRuns() async throws {
        let own = try ExecProber()
        async let pending = own.run(["/bin/sleep", "30"], timeout: .seconds(60))
        try await Task.sleep(for: .milliseconds(100))
        let start = ContinuousClock.now
        own.shutdown()
        let r = await pending
        #expect(!r.ok && r.message == "shutting down")
        #expect(ContinuousClock.now - start < .seconds(1))
        let after = await own.run(["/bin/true"], timeout: .seconds(1))
        #expect(after.message == "shutting down")
    }

    @Test func manyAtOnce() async {
        let exec = self.exec
        let oks = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<40 { group.addTask { await exec.run(["/bin/true"], timeout: .seconds(5)).ok } }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(oks == 40)
    }
}
