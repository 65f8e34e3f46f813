import Foundation
import Synchronization

/// A program run to its end, its output and errors read while its input is written, killed
/// (SIGKILL: ipmitool sits out SIGTERM in its retries) after `timeout`. Blocking: a daemon
/// calls it through `blocking(_:_:)`.
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

    public static func run(_ program: String, _ args: [String], input: Data? = nil, timeout: Duration? = nil) throws -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: program)
        p.arguments = args
        let out = Pipe(), err = Pipe(), inp = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = input == nil ? FileHandle.nullDevice : inp
        try p.run()
        let timedOut = Mutex(false)
        let timer = DispatchWorkItem {
            guard p.isRunning else { return }
            timedOut.withLock { $0 = true }
            kill(p.processIdentifier, SIGKILL)
        }
        if let timeout {
            let ms = Int(timeout.components.seconds) * 1000 + Int(timeout.components.attoseconds / 1_000_000_000_000_000)
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(ms), execute: timer)
        }
        // All three at once: a large input and a chatty program must not wait on each other.
        let group = DispatchGroup()
        if let input {
            DispatchQueue.global().async(group: group) {
                try? inp.fileHandleForWriting.write(contentsOf: input)
                try? inp.fileHandleForWriting.close()
            }
        }
        nonisolated(unsafe) var errors = Data()
        DispatchQueue.global().async(group: group) { errors = err.fileHandleForReading.readDataToEndOfFile() }
        let output = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        p.waitUntilExit()
        timer.cancel()
        return Result(status: p.terminationStatus, output: output,
                      errors: String(decoding: errors, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines),
                      timedOut: timedOut.withLock { $0 })
    }
}
