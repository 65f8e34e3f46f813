import CMTypes
import Foundation

/// Exec probes: the admin's command, no shell, in its own process group so that a hung
/// probe's children die with it. Exit 0 is up. Late: SIGTERM, then SIGKILL a second later.
/// Each runs on a thread of its own — exec probes are few, and a blocking wait is simplest.
enum ExecProbe {
    static let outputLimit = 4096

    static func run(_ argv: [String], timeout: Duration) async -> ProbeResult {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread { continuation.resume(returning: runBlocking(argv, timeout: timeout)) }
        }
    }

    static func runBlocking(_ argv: [String], timeout: Duration) -> ProbeResult {
        let start = ContinuousClock.now
        guard let path = argv.first else { return ProbeResult(ok: false, message: "exec: empty command", latency: .zero) }
        var pipeFDs: [Int32] = [0, 0]
        guard pipe(&pipeFDs) == 0 else { return ProbeResult(ok: false, message: "exec: pipe: \(String(cString: strerror(errno)))", latency: .zero) }
        let (readEnd, writeEnd) = (pipeFDs[0], pipeFDs[1])
        // Other probes' children must not inherit this pipe, or its EOF would come late.
        _ = fcntl(readEnd, F_SETFD, FD_CLOEXEC)
        _ = fcntl(writeEnd, F_SETFD, FD_CLOEXEC)
        defer { close(readEnd) }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, writeEnd, 1)
        posix_spawn_file_actions_adddup2(&actions, writeEnd, 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        posix_spawnattr_setpgroup(&attributes, 0)
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGHUP, SIGTERM, SIGINT, SIGPIPE] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)

        var pid: pid_t = 0
        let cArgs = argv.map { strdup($0) } + [nil]
        defer { for p in cArgs { free(p) } }
        let rc = posix_spawn(&pid, path, &actions, &attributes, cArgs, environ)
        close(writeEnd)
        guard rc == 0 else { return ProbeResult(ok: false, message: "exec \(path): \(String(cString: strerror(rc)))", latency: .zero) }

        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        let deadline = start + timeout
        var termSent: ContinuousClock.Instant?
        var status: Int32 = 0
        var outputOpen = true
        while true {
            if waitpid(pid, &status, WNOHANG) == pid { break }
            let now = ContinuousClock.now
            if termSent == nil, now >= deadline {
                kill(-pid, SIGTERM)
                termSent = now
            } else if let t = termSent, now >= t + .seconds(1) {
                kill(-pid, SIGKILL)
            }
            if outputOpen {
                var pfd = pollfd(fd: readEnd, events: Int16(POLLIN), revents: 0)
                if poll(&pfd, 1, 20) > 0 {
                    let n = read(readEnd, &buffer, buffer.count)
                    if n > 0 {
                        if output.count < outputLimit { output += buffer[0..<min(n, outputLimit - output.count)] }
                    } else {
                        outputOpen = false
                    }
                }
            } else {
                usleep(10_000)
            }
        }
        let elapsed = ContinuousClock.now - start
        let firstLine = String(decoding: output, as: UTF8.self).split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
        if termSent != nil {
            return ProbeResult(ok: false, message: "killed after timeout \(DurationText.format(timeout))", latency: elapsed)
        }
        // WIFEXITED/WEXITSTATUS are macros: decode the wait status by hand.
        let signal = status & 0x7f
        if signal != 0 {
            return ProbeResult(ok: false, message: "killed by signal \(signal)\(firstLine.isEmpty ? "" : ": \(firstLine)")", latency: elapsed)
        }
        let code = (status >> 8) & 0xff
        let text = firstLine.isEmpty ? "exit \(code)" : "exit \(code): \(firstLine)"
        return ProbeResult(ok: code == 0, message: text, latency: elapsed)
    }
}
