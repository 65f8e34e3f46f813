import CSystemd
import Foundation
import Logging

/// Where log lines go. `auto`: the journal when stderr is connected to it (JOURNAL_STREAM
/// names stderr's device and inode, as systemd sets it for services), or when stderr is not
/// a terminal and the journal's socket exists (a daemon started by other means on a systemd
/// host); else stderr. `--log-target stderr` forces plain lines.
public enum LogTarget: String, Sendable, CaseIterable {
    case auto, journal, stderr

    public func resolved() -> LogTarget {
        guard self == .auto else { return self }
        if Self.stderrIsJournal() { return .journal }
        if isatty(2) == 0, access("/run/systemd/journal/socket", F_OK) == 0 { return .journal }
        return .stderr
    }

    static func stderrIsJournal() -> Bool {
        guard let value = ProcessInfo.processInfo.environment["JOURNAL_STREAM"] else { return false }
        let parts = value.split(separator: ":")
        guard parts.count == 2, let dev = UInt64(parts[0]), let ino = UInt64(parts[1]) else { return false }
        var st = stat()
        guard fstat(2, &st) == 0 else { return false }
        return UInt64(st.st_dev) == dev && UInt64(st.st_ino) == ino
    }
}

/// Metadata keys that become journal fields: `node` → CM_NODE=, `check` → CM_CHECK=, …
/// so `journalctl CM_NODE=node001` finds everything about one node.
enum JournalField {
    static func name(for key: String) -> String? {
        let upper = key.uppercased().map { $0.isLetter || $0.isNumber ? $0 : "_" }
        guard let first = upper.first, first.isLetter else { return nil }
        return "CM_" + String(upper.prefix(60))
    }

    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }
}

/// The swift-log backend of every daemon. To the journal: structured entries through
/// sd_journal_sendv(3), metadata as CM_* fields. To stderr: one plain line per message for
/// terminals and tests, `cm-healthd: warning: message node=node001`.
public struct DaemonLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    let daemon: String
    let journal: Bool

    public init(daemon: String, level: Logger.Level, journal: Bool) {
        self.daemon = daemon
        self.logLevel = level
        self.journal = journal
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let all = metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 })
        if journal {
            var fields = [
                "MESSAGE=\(event.message)",
                "PRIORITY=\(JournalField.priority(event.level))",
                "SYSLOG_IDENTIFIER=\(daemon)",
                "CM_DAEMON=\(daemon)",
                "CODE_FILE=\(event.file)",
                "CODE_LINE=\(event.line)",
                "CODE_FUNC=\(event.function)",
            ]
            for (key, value) in all {
                if let name = JournalField.name(for: key) { fields.append("\(name)=\(value)") }
            }
            Self.send(fields)
        } else {
            var line = "\(daemon): \(event.level): \(event.message)"
            for (key, value) in all.sorted(by: { $0.key < $1.key }) { line += " \(key)=\(value)" }
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
    }

    static func send(_ fields: [String]) {
        var storage = fields.map { Array($0.utf8) }
        var iovecs: [iovec] = []
        iovecs.reserveCapacity(storage.count)
        storage.withUnsafeMutableBufferPointer { buffers in
            for i in buffers.indices {
                buffers[i].withUnsafeMutableBytes { raw in
                    iovecs.append(iovec(iov_base: raw.baseAddress, iov_len: raw.count))
                }
            }
            _ = sd_journal_sendv(iovecs, Int32(iovecs.count))
        }
    }
}

public enum DaemonLogging {
    /// Installs the backend once per process.
    public static func bootstrap(daemon: String, level: Logger.Level, target: LogTarget) {
        let resolved = target.resolved()
        LoggingSystem.bootstrap { _ in DaemonLogHandler(daemon: daemon, level: level, journal: resolved == .journal) }
    }
}
