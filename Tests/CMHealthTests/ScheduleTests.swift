import CMHealth
import Testing

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, seedable, good enough to make the
/// schedule's randomness reproducible in a test.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite struct ScheduleTests {
    @Test func splitMixMatchesReferenceOutput() {
        // First outputs for seed 0 from the reference C implementation.
        var g = SplitMix64(seed: 0)
        #expect(g.next() == 0xE220_A839_7B1D_CDAF)
        #expect(g.next() == 0x6E78_9E6A_A1B9_65F4)
    }

    @Test func firstFireIsSpreadUniformlyOverOneInterval() {
        let schedule = ProbeSchedule(interval: .seconds(1), jitterPercent: 10)
        var rng = SplitMix64(seed: 42)
        var buckets = [Int](repeating: 0, count: 10)
        var total: Duration = .zero
        for _ in 0..<1000 {
            let d = schedule.firstDelay(using: &rng)
            #expect(d >= .zero && d < .seconds(1))
            buckets[Int(d.components.attoseconds / 100_000_000_000_000_000)] += 1
            total += d
        }
        // 1,000 checks over ten 100 ms slots: about 100 each, none empty or crowded
        // (binomial σ ≈ 9.5; 60…140 is over 4σ either side).
        for count in buckets { #expect((60...140).contains(count), "slot counts \(buckets)") }
        let mean = total / 1000
        #expect(mean > .milliseconds(450) && mean < .milliseconds(550))
    }

    @Test(arguments: [0, 10, 25, 50])
    func nextDelayStaysWithinJitter(percent: Int) {
        let interval = Duration.seconds(2)
        let schedule = ProbeSchedule(interval: interval, jitterPercent: percent)
        let spread = interval * Double(percent) / 100
        var rng = SplitMix64(seed: 7)
        var low = interval, high = interval
        for _ in 0..<2000 {
            let d = schedule.nextDelay(using: &rng)
            #expect(d >= interval - spread && d <= interval + spread)
            low = min(low, d)
            high = max(high, d)
        }
        if percent == 0 {
            #expect(low == interval && high == interval)
        } else {
            // Both sides of the interval are used, nearly to the bounds.
            #expect(low < interval - spread * 0.9)
            #expect(high > interval + spread * 0.9)
        }
    }

    @Test func jitterIsClampedToHalfTheInterval() {
        #expect(ProbeSchedule(interval: .seconds(1), jitterPercent: 80).jitterPercent == 50)
        #expect(ProbeSchedule(interval: .seconds(1), jitterPercent: -5).jitterPercent == 0)
        var rng = SplitMix64(seed: 1)
        let schedule = ProbeSchedule(interval: .seconds(1), jitterPercent: 80)
        for _ in 0..<500 {
            let d = schedule.nextDelay(using: &rng)
            #expect(d >= .milliseconds(500) && d <= .milliseconds(1500))
        }
    }

    @Test func sameSeedSameSchedule() {
        let schedule = ProbeSchedule(interval: .milliseconds(1500), jitterPercent: 20)
        var a = SplitMix64(seed: 99), b = SplitMix64(seed: 99)
        for _ in 0..<100 {
            #expect(schedule.firstDelay(using: &a) == schedule.firstDelay(using: &b))
            #expect(schedule.nextDelay(using: &a) == schedule.nextDelay(using: &b))
        }
    }

    @Test func degenerateIntervalsDoNotTrap() {
        var rng = SplitMix64(seed: 3)
        let zero = ProbeSchedule(interval: .zero, jitterPercent: 50)
        #expect(zero.interval == .milliseconds(1))
        #expect(zero.firstDelay(using: &rng) < .milliseconds(1))
        let huge = ProbeSchedule(interval: .seconds(Int64.max / 2), jitterPercent: 50)
        #expect(huge.nextDelay(using: &rng) > .zero)
    }
}
