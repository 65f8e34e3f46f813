import CMTypes
import Foundation
import Glibc
import Synchronization

public struct ExecProberError: Error, CustomStringConvertible {
    public var description: String
}

/// Exec checks: the admin's command, run with posix_spawn (argv as given, no shell).
///
/// All children are watched by one thread that polls their output and a wake-up socket,
/// so a hundred running checks cost no thread each. Each child leads its own process
/// group: when it is late it gets SIGTERM, then SIGKILL a second later, sent to the whole
/// group so that whatever it started dies too. When it exits in time, anything it left
/// running in its group is killed as well (a check must not leave processes behind).
///
/// stdout and stderr go to one socket pair; the first 4 KiB are kept and the first line
/// goes into the message ("exit 2: disk full"); the rest is read and dropped so that a
/// chatty command never blocks on a full pipe.
///
/// Children get stdin from /dev/null, an empty signal mask, default signal dispositions
/// (the daemon ignores SIGPIPE; that must not be inherited) and `environment` only: the
/// daemon's own variables (NOTIFY_SOCKET, credentials) are none of a check's business.
public final class ExecProber: Sendable {
    public static let outputLimit = 4096
    /// A late command gets this long between SIGTERM and SIGKILL.
    public static let killGrace: Duration = .seconds(1)
    public static let defaultEnvironment = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"]

    private let core: Core

    /// - Parameters:
    ///   - maxRunning: commands running at once; more are refused at once with a message.
    ///   - environment: "NAME=value" strings, the whole environment of every command.
    public init(maxRunning: Int = 64, environment: [String] = ExecProber.defaultEnvironment) throws(ExecProberError) {
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds) == 0 else {
            throw ExecProberError(description: "exec: socketpair: \(String(cString: strerror(errno)))")
        }
        core = Core(wakeRead: fds[0], wakeWrite: fds[1], maxRunning: max(1, maxRunning), environment: environment)
        let core = core
        startThread(named: "cm-exec") { core.run() }
    }

    deinit { core.shutdown() }

    /// "exit 0", "exit 2: disk full", "killed after timeout 2s", "killed by signal 9",
    /// "exec /usr/lib/x/check: No such file or directory".
    public func run(_ argv: [String], timeout: Duration) async -> ProbeResult {
        await withCheckedContinuation { continuation in start(argv, timeout: timeout) { continuation.resume(returning: $0) } }
    }

    /// Starts one command; `done` is called exactly once, on the prober's thread (or the
    /// caller's, for a command refused at once).
    public func start(_ argv: [String], timeout: Duration, done: @escaping @Sendable (ProbeResult) -> Void) {
        guard let path = argv.first, !path.isEmpty else { return done(ProbeResult(ok: false, message: "exec: empty command", latency: .zero)) }
        core.submit(Submission(argv: argv, path: path, timeout: timeout, done: done))
    }

    /// Kills every running command (SIGKILL to its group) and fails it with "shutting down".
    public func shutdown() { core.shutdown() }
}

extension ExecProber {
    struct Submission: Sendable {
        let argv: [String]
        let path: String
        let timeout: Duration
        let done: @Sendable (ProbeResult) -> Void
    }

    struct Queue {
        var submitted: [Submission] = []
        var running = 0
        var stopping = false
    }

    /// One spawned command; lives on the worker thread only.
    final class Child {
        let pid: pid_t
        let submission: Submission
        let started: ContinuousClock.Instant
        let deadline: ContinuousClock.Instant
        /// Our end of the output socket pair; -1 once it reached end of file.
        var output: Int32
        var kept: [UInt8] = []
        var terminated: ContinuousClock.Instant?
        var killed = false

        init(pid: pid_t, submission: Submission, output: Int32, started: ContinuousClock.Instant) {
            self.pid = pid
            self.submission = submission
            self.output = output
            self.started = started
            deadline = started + submission.timeout
        }
    }

    final class Core: Sendable {
        let wakeRead: Int32
        let wakeWrite: Int32
        let maxRunning: Int
        let environment: [String]
        let queue = Mutex(Queue())

        init(wakeRead: Int32, wakeWrite: Int32, maxRunning: Int, environment: [String]) {
            self.wakeRead = wakeRead
            self.wakeWrite = wakeWrite
            self.maxRunning = maxRunning
            self.environment = environment
        }

        func submit(_ s: Submission) {
            let refusal: String? = queue.withLock { q in
                if q.stopping { return "shutting down" }
                if q.running >= maxRunning { return "exec: too many commands running (\(maxRunning))" }
                q.running += 1
                q.submitted.append(s)
                return nil
            }
            if let refusal { s.done(ProbeResult(ok: false, message: refusal, latency: .zero)) } else { wake() }
        }

        func shutdown() {
            let first = queue.withLock { q in
                defer { q.stopping = true }
                return !q.stopping
            }
            if first { wake() }
        }

        /// Both ends close only here, when neither the engine nor its thread holds the core
        /// any more: a late `wake` can never write to a closed or reused descriptor.
        deinit {
            close(wakeRead)
            close(wakeWrite)
        }

        /// A byte on the socket pair ends the worker's poll. Non-blocking: if the socket is
        /// full, wake-ups are pending anyway.
        private func wake() {
            var byte: UInt8 = 1
            _ = write(wakeWrite, &byte, 1)
        }

        // MARK: The worker thread

        func run() {
            let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
            defer { for p in envp { free(p) } }
            var children: [Child] = []
            var batch: [Submission] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            var pollFDs: [pollfd] = []
            while true {
                let stopping = queue.withLock { q in
                    swap(&q.submitted, &batch)
                    return q.stopping
                }
                if stopping {
                    for s in batch { s.done(ProbeResult(ok: false, message: "shutting down", latency: .zero)) }
                    for c in children {
                        kill(-c.pid, SIGKILL)
                        var status: Int32 = 0
                        while waitpid(c.pid, &status, 0) < 0, errno == EINTR {}
                        if c.output >= 0 { close(c.output) }
                        c.submission.done(ProbeResult(ok: false, message: "shutting down", latency: ContinuousClock.now - c.started))
                    }
                    return
                }
                var finished = 0
                for s in batch {
                    switch spawn(s, envp: envp) {
                    case .success(let child): children.append(child)
                    case .failure(let failure):
                        s.done(failure.result)
                        finished += 1
                    }
                }
                batch.removeAll(keepingCapacity: true)

                // Wait for output, a wake-up, or the next moment something is due.
                let now = ContinuousClock.now
                var wait: Duration = children.isEmpty ? .seconds(60) : .milliseconds(100)
                pollFDs.removeAll(keepingCapacity: true)
                pollFDs.append(pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0))
                for c in children {
                    if c.output >= 0 {
                        pollFDs.append(pollfd(fd: c.output, events: Int16(POLLIN), revents: 0))
                    } else {
                        // Output ended: the exit follows within microseconds, normally.
                        wait = min(wait, .milliseconds(5))
                    }
                    let due = c.terminated.map { $0 + ExecProber.killGrace } ?? c.deadline
                    if !c.killed { wait = min(wait, due - now) }
                }
                let ms = Int32(clamping: max(0, (clampedNanoseconds(wait) + 999_999) / 1_000_000))
                if poll(&pollFDs, nfds_t(pollFDs.count), ms) > 0 {
                    if pollFDs[0].revents != 0 { drainWakeups() }
                    for p in pollFDs.dropFirst() where p.revents != 0 {
                        if let c = children.first(where: { $0.output == p.fd }) { readOutput(c, &buffer) }
                    }
                }

                let after = ContinuousClock.now
                var i = 0
                while i < children.count {
                    let c = children[i]
                    if let result = reapIfExited(c, at: after) {
                        c.submission.done(result)
                        children.swapAt(i, children.count - 1)
                        children.removeLast()
                        finished += 1
                        continue
                    }
                    if c.terminated == nil, after >= c.deadline {
                        kill(-c.pid, SIGTERM)
                        c.terminated = after
                    } else if let t = c.terminated, !c.killed, after >= t + ExecProber.killGrace {
                        kill(-c.pid, SIGKILL)
                        c.killed = true
                    }
                    i += 1
                }
                if finished > 0 { queue.withLock { $0.running -= finished } }
            }
        }

        private func drainWakeups() {
            var sink = [UInt8](repeating: 0, count: 64)
            while read(wakeRead, &sink, sink.count) > 0 {}
        }

        private func readOutput(_ c: Child, _ buffer: inout [UInt8]) {
            let n = read(c.output, &buffer, buffer.count)
            if n > 0 {
                let room = ExecProber.outputLimit - c.kept.count
                if room > 0 { c.kept.append(contentsOf: buffer[0..<min(n, room)]) }
            } else if n == 0 || (errno != EAGAIN && errno != EINTR) {
                close(c.output)
                c.output = -1
            }
        }

        /// The result if the command has exited; nil while it runs. Uses waitid(WNOWAIT)
        /// first, so the leader stays a zombie — its pid, the group's id, cannot be reused —
        /// while the rest of its group is killed; only then is it reaped.
        private func reapIfExited(_ c: Child, at now: ContinuousClock.Instant) -> ProbeResult? {
            var info = siginfo_t()
            guard waitid(P_PID, id_t(c.pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0, info._sifields._sigchld.si_pid == c.pid else { return nil }
            kill(-c.pid, SIGKILL)
            var status: Int32 = 0
            while waitpid(c.pid, &status, 0) < 0, errno == EINTR {}
            if c.output >= 0 {
                // What the command wrote just before exiting is still in the socket.
                var buffer = [UInt8](repeating: 0, count: 4096)
                for _ in 0..<4 where c.output >= 0 && c.kept.count < ExecProber.outputLimit {
                    var p = pollfd(fd: c.output, events: Int16(POLLIN), revents: 0)
                    guard poll(&p, 1, 0) > 0 else { break }
                    readOutput(c, &buffer)
                }
                if c.output >= 0 { close(c.output) }
                c.output = -1
            }
            let elapsed = now - c.started
            if c.terminated != nil {
                return ProbeResult(ok: false, message: "killed after timeout \(DurationText.format(c.submission.timeout))", latency: elapsed)
            }
            let line = Self.firstLine(c.kept)
            // WIFEXITED/WEXITSTATUS are macros Swift cannot import: decode by hand.
            let signal = status & 0x7f
            if signal != 0 {
                return ProbeResult(ok: false, message: "killed by signal \(signal)" + (line.isEmpty ? "" : ": \(line)"), latency: elapsed)
            }
            let code = (status >> 8) & 0xff
            return ProbeResult(ok: code == 0, message: "exit \(code)" + (line.isEmpty ? "" : ": \(line)"), latency: elapsed)
        }

        static func firstLine(_ bytes: [UInt8]) -> String {
            let end = bytes.firstIndex(where: { $0 == 0x0a || $0 == 0x0d }) ?? bytes.endIndex
            return String(decoding: bytes[..<end], as: UTF8.self).trimmingCharacters(in: .whitespaces)
        }

        private func spawn(_ s: Submission, envp: [UnsafeMutablePointer<CChar>?]) -> Result<Child, SpawnFailure> {
            let started = ContinuousClock.now
            func fail(_ what: String, _ code: Int32) -> Result<Child, SpawnFailure> {
                .failure(SpawnFailure(ProbeResult(ok: false, message: "\(what): \(String(cString: strerror(code)))", latency: ContinuousClock.now - started)))
            }
            // A socket pair rather than pipe2: Swift sees no pipe2 here, and SOCK_CLOEXEC
            // makes the pair close-on-exec atomically, so a command spawned concurrently by
            // another part of the daemon cannot inherit it and hold our end-of-file back.
            var fds: [Int32] = [-1, -1]
            guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else { return fail("exec: socketpair", errno) }
            let (ours, theirs) = (fds[0], fds[1])
            _ = fcntl(ours, F_SETFL, fcntl(ours, F_GETFL) | O_NONBLOCK)
            _ = Glibc.shutdown(ours, Int32(SHUT_WR))  // we only read

            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            posix_spawn_file_actions_adddup2(&actions, theirs, 1)
            posix_spawn_file_actions_adddup2(&actions, theirs, 2)

            var attributes = posix_spawnattr_t()
            posix_spawnattr_init(&attributes)
            defer { posix_spawnattr_destroy(&attributes) }
            posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
            posix_spawnattr_setpgroup(&attributes, 0)  // a new group led by the child
            var mask = sigset_t()
            sigemptyset(&mask)
            posix_spawnattr_setsigmask(&attributes, &mask)
            var defaults = sigset_t()
            sigemptyset(&defaults)
            for sig in [SIGHUP, SIGINT, SIGQUIT, SIGPIPE, SIGTERM, SIGUSR1, SIGUSR2, SIGALRM, SIGCHLD, SIGXFSZ] { sigaddset(&defaults, sig) }
            posix_spawnattr_setsigdefault(&attributes, &defaults)

            let argv: [UnsafeMutablePointer<CChar>?] = s.argv.map { strdup($0) } + [nil]
            defer { for p in argv { free(p) } }
            var pid: pid_t = 0
            // With a slash the path is used as is; without one it is looked up in the
            // daemon's PATH, like execvp.
            let rc = s.path.contains("/") ? posix_spawn(&pid, s.path, &actions, &attributes, argv, envp)
                                          : posix_spawnp(&pid, s.path, &actions, &attributes, argv, envp)
            close(theirs)
            guard rc == 0 else {
                close(ours)
                return fail("exec \(s.path)", rc)
            }
            return .success(Child(pid: pid, submission: s, output: ours, started: started))
        }
    }

    struct SpawnFailure: Error {
        let result: ProbeResult
        init(_ result: ProbeResult) { self.result = result }
    }
}
