import CLinux
import Foundation

/// A program run to its end, its output and errors read while its input is written, killed
/// (SIGKILL: ipmitool sits out SIGTERM in its retries) after `timeout`. Blocking: a daemon
/// calls it through `blocking(_:_:)`.
///
/// posix_spawn(3), not Foundation's Process: the child gets stdin, stdout and stderr and no
/// other descriptor of the daemon's (closefrom), its signal mask and dispositions reset, and
/// the run ends when the child exits, not when every descendant has let go of its output: a
/// program that starts a daemon (`pg_ctl start`) returns like it does in a shell. (Process
/// waits for a socket that such a grandchild inherits, and so for ever.)
public enum ChildProcess {
    public struct Result: Sendable {
        public var status: Int32
        public var output: Data
        /// stderr, trimmed.
        public var errors: String
        public var timedOut: Bool
        public var text: String { String(decoding: output, as: UTF8.self) }
        public var succeeded: Bool { status == 0 && !timedOut }

        /// Why it failed, in the program's own words where it said any.
        public func failure(_ program: String, timeout: Duration?) -> String {
            if timedOut { return "no answer within \(timeout.map { "\($0)" } ?? "the time allowed")" }
            if !errors.isEmpty { return errors }
            let out = text.trimmingCharacters(in: .whitespacesAndNewlines)
            return out.isEmpty ? "\((program as NSString).lastPathComponent) exit status \(status)" : out
        }
    }

    public struct SpawnError: Error, CustomStringConvertible {
        public var description: String
    }

    /// How long output is still awaited after the child exited, for what a descendant that
    /// kept its stdout or stderr writes (a daemon it started keeps them for ever). What is
    /// already in the pipes is read whatever the clock says (a busy machine can keep this
    /// thread off the CPU for longer than that), up to `drainCap` if a descendant never stops.
    static let drainAfterExit = 200
    static let drainCap = 2000

    public static func run(_ program: String, _ args: [String], input: Data? = nil, timeout: Duration? = nil) throws -> Result {
        var outPipe: [Int32] = [-1, -1], errPipe: [Int32] = [-1, -1], inPipe: [Int32] = [-1, -1]
        guard pipe2(&outPipe, O_CLOEXEC) == 0, pipe2(&errPipe, O_CLOEXEC) == 0, input == nil || pipe2(&inPipe, O_CLOEXEC) == 0 else {
            let e = errno
            for fd in outPipe + errPipe + inPipe where fd >= 0 { close(fd) }
            throw SpawnError(description: "\(program): pipe: \(String(cString: strerror(e)))")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if input != nil {
            posix_spawn_file_actions_adddup2(&actions, inPipe[0], 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
        posix_spawn_file_actions_addclosefrom_np(&actions, 3)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        // The daemon blocks SIGTERM and SIGHUP for its signal thread, and may ignore SIGPIPE:
        // the child starts with none blocked and every disposition at its default.
        var none = sigset_t(), all = sigset_t()
        sigemptyset(&none)
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attr, &none)
        posix_spawnattr_setsigdefault(&attr, &all)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = ([program] + args).map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        var pid: pid_t = 0
        var spawned = posix_spawn(&pid, program, &actions, &attr, argv, environ)
        // ETXTBSY: a program written a moment ago is still open for writing in a child another
        // thread forked meanwhile (until its exec or closefrom). That passes: try again, 1 s at most.
        var tries = 0
        while spawned == ETXTBSY, tries < 20 {
            tries += 1
            usleep(50_000)
            spawned = posix_spawn(&pid, program, &actions, &attr, argv, environ)
        }
        close(outPipe[1])
        close(errPipe[1])
        if input != nil { close(inPipe[0]) }
        guard spawned == 0 else {
            close(outPipe[0])
            close(errPipe[0])
            if input != nil { close(inPipe[1]) }
            throw SpawnError(description: "\(program): \(String(cString: strerror(spawned)))")
        }

        var output = Data(), errors = Data()
        var reading: [Int32: Bool] = [outPipe[0]: true, errPipe[0]: true]
        let toWrite = input.map { [UInt8]($0) } ?? []
        var written = 0
        var inFD: Int32 = input != nil ? inPipe[1] : -1
        if inFD >= 0 {
            _ = fcntl(inFD, F_SETFL, fcntl(inFD, F_GETFL) | O_NONBLOCK)
            if toWrite.isEmpty { close(inFD); inFD = -1 }
        }
        let deadline = timeout.map { ContinuousClock.now + $0 }
        var timedOut = false, exited = false, status: Int32 = 0
        var drainUntil: ContinuousClock.Instant?, drainLimit: ContinuousClock.Instant?
        var readLastRound = false
        var buffer = [UInt8](repeating: 0, count: 65536)

        while true {
            if !exited {
                var raw: Int32 = 0
                if waitpid(pid, &raw, WNOHANG) == pid {
                    exited = true
                    status = Self.exitStatus(raw)
                    drainUntil = .now + .milliseconds(drainAfterExit)
                    drainLimit = .now + .milliseconds(Self.drainCap)
                    readLastRound = true
                }
            }
            let open = reading.filter(\.value).map(\.key)
            if open.isEmpty && exited { break }
            if let d = drainUntil, ContinuousClock.now >= d, !readLastRound { break }
            if let c = drainLimit, ContinuousClock.now >= c { break }
            if !exited, let deadline, ContinuousClock.now >= deadline, !timedOut {
                timedOut = true
                kill(pid, SIGKILL)
            }
            var fds = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            if inFD >= 0 { fds.append(pollfd(fd: inFD, events: Int16(POLLOUT), revents: 0)) }
            // Short waits: the child's exit is seen by waitpid above, not by poll.
            _ = poll(&fds, nfds_t(fds.count), 20)
            readLastRound = false
            for p in fds where p.revents != 0 {
                if p.fd == inFD {
                    let n = toWrite.withUnsafeBytes { write(inFD, $0.baseAddress! + written, toWrite.count - written) }
                    if n > 0 { written += n }
                    if n < 0 && errno != EAGAIN && errno != EINTR || written == toWrite.count {
                        close(inFD)
                        inFD = -1
                    }
                    continue
                }
                let n = read(p.fd, &buffer, buffer.count)
                if n > 0 {
                    readLastRound = true
                    if p.fd == outPipe[0] { output.append(contentsOf: buffer[0..<n]) } else { errors.append(contentsOf: buffer[0..<n]) }
                } else if n == 0 || (errno != EAGAIN && errno != EINTR) {
                    reading[p.fd] = false
                }
            }
        }
        if !exited {
            var raw: Int32 = 0
            while waitpid(pid, &raw, 0) < 0 && errno == EINTR {}
            status = Self.exitStatus(raw)
        }
        close(outPipe[0])
        close(errPipe[0])
        if inFD >= 0 { close(inFD) }
        return Result(status: status, output: output,
                      errors: String(decoding: errors, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines),
                      timedOut: timedOut)
    }

    /// The exit code, or 128 + the signal that ended it (as a shell says).
    static func exitStatus(_ raw: Int32) -> Int32 {
        let signal = raw & 0x7f
        return signal == 0 ? (raw >> 8) & 0xff : 128 + signal
    }
}
