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
