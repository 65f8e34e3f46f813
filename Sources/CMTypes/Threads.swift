import CLinux
import Foundation

/// Starts a thread that the kernel knows by `name` (its first 15 bytes): what `top -H`,
/// `ps -L`, /proc/PID/task/TID/comm and gdb show. Foundation's `Thread.name` alone does not
/// reach the kernel on Linux, so a daemon's threads were all "oot.default-qos", the tail of the
/// libdispatch thread that started them.
public func startThread(named name: String, _ body: @escaping @Sendable () -> Void) {
    let thread = Thread {
        let bytes = name.utf8.prefix(15).map { CChar(bitPattern: $0) } + [0]
        _ = pthread_setname_np(pthread_self(), bytes)
        body()
    }
    thread.name = name
    thread.start()
}

/// Runs work that blocks (a subprocess such as the gluster CLI, a file on a network filesystem
/// that stalls while a peer is unreachable) on a thread of its own and awaits its result.
/// Swift's cooperative pool has one thread per core: two such calls on it would stall every
/// other task of the daemon, its control socket's answers included, until they return.
public func blocking<T: Sendable>(_ name: String, _ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        startThread(named: name) { continuation.resume(with: Result { try body() }) }
    }
}

/// `blocking` for work that cannot fail.
public func blocking<T: Sendable>(_ name: String, _ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        startThread(named: name) { continuation.resume(returning: body()) }
    }
}
