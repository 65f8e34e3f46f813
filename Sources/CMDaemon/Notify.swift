import CSystemd
import Foundation

/// sd_notify(3) for Type=notify units. Without NOTIFY_SOCKET every call is a no-op, so the
/// daemon runs the same in a terminal.
public struct SystemdNotifier: Sendable {
    public init() {}

    public var isEnabled: Bool { ProcessInfo.processInfo.environment["NOTIFY_SOCKET"] != nil }

    @discardableResult
    public func send(_ fields: String...) -> Bool {
        sd_notify(0, fields.joined(separator: "\n")) > 0
    }

    public func ready(status: String) { send("READY=1", "STATUS=\(oneLine(status))") }
    public func status(_ status: String) { send("STATUS=\(oneLine(status))") }
    public func reloading() { send("RELOADING=1", "MONOTONIC_USEC=\(Self.monotonicMicroseconds())", "STATUS=reloading configuration") }
    public func stopping() { send("STOPPING=1", "STATUS=stopping") }
    public func watchdog() { send("WATCHDOG=1") }

    /// Half of WATCHDOG_USEC (systemd's advice), or nil when the unit has no watchdog.
    public var watchdogPingInterval: Duration? {
        var usec: UInt64 = 0
        guard sd_watchdog_enabled(0, &usec) > 0, usec > 0 else { return nil }
        return .microseconds(Int64(usec / 2))
    }

    private func oneLine(_ s: String) -> String { s.replacingOccurrences(of: "\n", with: " ") }

    static func monotonicMicroseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000 + UInt64(ts.tv_nsec) / 1_000
    }
}

/// Sockets passed by systemd (LISTEN_FDS / LISTEN_FDNAMES), by FileDescriptorName=.
public struct ListenFDs: Sendable {
    public var byName: [String: [CInt]]

    /// The descriptors passed to this process, taken once on first use.
    public static let passed = take()

    /// Every descriptor passed, whatever its name.
    public var all: [CInt] { byName.values.flatMap { $0 }.sorted() }

    /// Takes the passed descriptors once and unsets the variables so children do not inherit them.
    static func take() -> ListenFDs {
        var names: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
        let count = sd_listen_fds_with_names(1, &names)
        var byName: [String: [CInt]] = [:]
        if count > 0 {
            for i in 0..<Int(count) {
                let name = names?[i].map { String(cString: $0) } ?? "unknown"
                byName[name, default: []].append(SD_LISTEN_FDS_START + CInt(i))
            }
        }
        if let names {
            var i = 0
            while let p = names[i] { free(p); i += 1 }
            free(names)
        }
        return ListenFDs(byName: byName)
    }

    /// The socket named `name`; a single unnamed socket ("unknown", as systemd-socket-activate
    /// without --fdname passes it) is accepted too.
    public func socket(named name: String) -> CInt? {
        if let fd = byName[name]?.first { return fd }
        if byName.count == 1, let fds = byName["unknown"], fds.count == 1, Self.isUnixSocket(fds[0]) { return fds[0] }
        return nil
    }

    static func isUnixSocket(_ fd: CInt) -> Bool {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return rc == 0 && storage.ss_family == sa_family_t(AF_UNIX)
    }
}
