import CMTypes

/// The outcome of one probe of any kind: what rise/fall counting, the history and
/// `cmctl health` see.
public struct ProbeResult: Sendable, Equatable {
    public var ok: Bool
    /// One line for people: "HTTP 200 in 3.1 ms", "connect: Connection refused",
    /// "timeout after 1s". Never contains a line break, at most `messageLimit` bytes.
    public var message: String
    /// How long the probe took (for a failure, until it failed).
    public var latency: Duration

    /// Messages are stored with every transition and shown in tables: keep them short.
    public static let messageLimit = 200

    public init(ok: Bool, message: String, latency: Duration) {
        self.ok = ok
        self.message = Self.oneLine(message)
        self.latency = latency
    }

    /// Text from outside (a command's output, an expected body, curl's error text) may hold
    /// line breaks or control characters that would break a log line or a table row:
    /// they become spaces, and the text is cut at `messageLimit` bytes on a character boundary.
    public static func oneLine(_ text: String) -> String {
        var out = String()
        out.reserveCapacity(min(text.utf8.count, messageLimit))
        var bytes = 0
        for scalar in text.unicodeScalars {
            let s: Unicode.Scalar = (scalar.value < 0x20 || scalar.value == 0x7f) ? " " : scalar
            let width = UTF8.width(s)
            guard bytes + width <= messageLimit else { break }
            out.unicodeScalars.append(s)
            bytes += width
        }
        return out
    }
}

/// Latency as people read it in a message: "3.1 ms", "0.2 ms", "1204.7 ms". Pure integer
/// arithmetic, no Foundation formatter on the hot path.
func milliText(_ d: Duration) -> String {
    let (seconds, atto) = d.components
    // Tenths of a millisecond, rounded half up; negative durations (clock skew) read as 0.
    let tenths = max(0, seconds * 10_000 + (atto + 50_000_000_000_000) / 100_000_000_000_000)
    return "\(tenths / 10).\(tenths % 10) ms"
}

/// "timeout after 1s", "timeout after 250ms": the duration written the way config writes it.
func timeoutText(_ timeout: Duration) -> String {
    "timeout after \(DurationText.format(timeout))"
}

/// Whole nanoseconds of a duration, 0 for negative ones, saturating at Int64.max.
func clampedNanoseconds(_ d: Duration) -> Int64 {
    let (seconds, atto) = d.components
    guard seconds >= 0, atto >= 0 || seconds > 0 else { return 0 }
    let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
    guard !overflow else { return .max }
    let (sum, overflow2) = whole.addingReportingOverflow(atto / 1_000_000_000)
    return overflow2 ? .max : max(0, sum)
}
