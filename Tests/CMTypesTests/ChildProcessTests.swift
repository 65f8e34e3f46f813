import CMTypes
import Foundation
import Testing

@Suite struct ChildProcessTests {
    @Test func outputErrorsAndStatus() throws {
        let r = try ChildProcess.run("/bin/sh", ["-c", "echo out; echo err >&2; exit 3"])
        #expect(r.text == "out\n" && r.errors == "err" && r.status == 3 && !r.succeeded && !r.timedOut)
        #expect(r.failure("/bin/sh", timeout: nil) == "err")
    }

    @Test func inputLargerThanAPipeIsWrittenWhileOutputIsRead() throws {
        let input = Data((0..<1_000_000).map { UInt8(truncatingIfNeeded: $0) })
        let r = try ChildProcess.run("/bin/cat", [], input: input)
        #expect(r.succeeded && r.output == input)
    }

    /// `pg_ctl start` returns while the server it started keeps running with the same stdout:
    /// the run ends with the child, not with its descendants.
    @Test func aChildThatLeavesADaemonBehindReturns() throws {
        let started = ContinuousClock.now
        let r = try ChildProcess.run("/bin/sh", ["-c", "sleep 60 & echo $!"])
        #expect(r.succeeded)
        #expect(ContinuousClock.now - started < .seconds(20), "waited for the background sleep")
        if let pid = Int32(r.text.trimmingCharacters(in: .whitespacesAndNewlines)) { kill(pid, SIGKILL) }
    }

    @Test func killedAfterItsTimeout() throws {
        let started = ContinuousClock.now
        let r = try ChildProcess.run("/bin/sleep", ["30"], timeout: .milliseconds(300))
        #expect(r.timedOut && !r.succeeded && r.status == 128 + SIGKILL)
        #expect(ContinuousClock.now - started < .seconds(10))
        #expect(r.failure("/bin/sleep", timeout: .milliseconds(300)).hasPrefix("no answer within"))
    }

    @Test func theChildGetsNoOtherDescriptorAndDefaultSignals() throws {
        let fd = open("/dev/null", O_RDONLY)
        defer { close(fd) }
        let r = try ChildProcess.run("/bin/sh", ["-c", "ls /proc/self/fd; grep -E '^Sig(Blk|Ign)' /proc/self/status"])
        let fds = r.text.split(separator: "\n").filter { $0.allSatisfy(\.isNumber) }
        // 0, 1, 2 and the one ls opens to read the directory.
        #expect(fds.count <= 4, "\(fds)")
        #expect(r.text.contains("SigBlk:\t0000000000000000"))
    }

    @Test func aMissingProgramThrows() {
        #expect(throws: (any Error).self) { try ChildProcess.run("/nonexistent/program", []) }
    }
}
