/// When the probes of one check fire. Pure: the random source is injected, so tests use a
/// seeded generator and the daemon a system one.
///
/// A thousand checks configured with the same interval and started together must not fire
/// together (a burst of a thousand connects every second, then nothing): the first probe
/// fires at a uniformly random offset in [0, interval). After that each delay is the
/// interval moved by up to ±jitter percent, so checks that drift into step drift apart again.
public struct ProbeSchedule: Sendable, Equatable {
    public let interval: Duration
    /// 0…50. More than half the interval would let two probes of one check nearly coincide.
    public let jitterPercent: Int

    public static let jitterRange = 0...50

    /// `interval` at or below zero is taken as 1 ms (a config validated elsewhere never
    /// gives one); `jitterPercent` is clamped to `jitterRange`.
    public init(interval: Duration, jitterPercent: Int) {
        self.interval = max(interval, .milliseconds(1))
        self.jitterPercent = min(max(jitterPercent, Self.jitterRange.lowerBound), Self.jitterRange.upperBound)
    }

    /// Delay before the first probe: uniform over [0, interval), nanosecond resolution.
    public func firstDelay<R: RandomNumberGenerator>(using rng: inout R) -> Duration {
        .nanoseconds(Int64.random(in: 0..<intervalNanoseconds, using: &rng))
    }

    /// Delay between one probe and the next: uniform over [interval − j, interval + j]
    /// with j = interval × jitterPercent / 100.
    public func nextDelay<R: RandomNumberGenerator>(using rng: inout R) -> Duration {
        let n = intervalNanoseconds
        let j = n / 100 * Int64(jitterPercent) + n % 100 * Int64(jitterPercent) / 100
        guard j > 0 else { return .nanoseconds(n) }
        return .nanoseconds(n + Int64.random(in: -j...j, using: &rng))
    }

    /// The interval in nanoseconds, at least 1, saturating near 146 years so that the
    /// arithmetic above cannot overflow (n + j ≤ 1.5 n < Int64.max).
    var intervalNanoseconds: Int64 {
        let (seconds, atto) = interval.components
        let cap: Int64 = Int64.max / 3 * 2 / 1_000_000_000
        guard seconds < cap else { return cap * 1_000_000_000 }
        return max(1, seconds * 1_000_000_000 + atto / 1_000_000_000)
    }
}
