import CMTypes
import Foundation

/// PXE clients seen in DHCP that are not nodes yet: what DHCP told about them (the
/// architecture), for the node they become when they fetch their script. Bounded: past
/// `capacity` the oldest sighting goes, and one older than `maxAge` counts for nothing, so
/// made-up MAC addresses cost a fixed amount of memory and leave nothing behind.
struct Sightings {
    struct Sighting {
        var arch: String?
        var at: Date
        /// Its place in `ring`, so that a slot reused for another MAC address forgets only
        /// the sighting it held.
        var slot: Int
    }

    let capacity: Int
    let maxAge: TimeInterval
    private var byMAC: [MACAddress: Sighting] = [:]
    private var ring: [MACAddress?]
    private var next = 0

    init(capacity: Int = 4096, maxAge: TimeInterval = 600) {
        self.capacity = max(1, capacity)
        self.maxAge = maxAge
        ring = Array(repeating: nil, count: self.capacity)
    }

    var count: Int { byMAC.count }

    mutating func record(_ mac: MACAddress, arch: String?, at now: Date) {
        if var known = byMAC[mac] {
            known.at = now
            if arch != nil { known.arch = arch }
            byMAC[mac] = known
            return
        }
        if let old = ring[next], byMAC[old]?.slot == next { byMAC[old] = nil }
        ring[next] = mac
        byMAC[mac] = Sighting(arch: arch, at: now, slot: next)
        next = (next + 1) % capacity
    }

    func sighting(of mac: MACAddress, now: Date) -> Sighting? {
        guard let s = byMAC[mac], now.timeIntervalSince(s.at) <= maxAge else { return nil }
        return s
    }
}

/// A token bucket: `rate` events a second on average, bursts of up to `burst`; rate 0 lets
/// everything through.
struct RateLimiter {
    let rate: Double
    let burst: Double
    private var tokens: Double
    private var last: Date?

    init(perSecond rate: Int, burst: Int? = nil) {
        self.rate = Double(rate)
        self.burst = Double(burst ?? rate * 2)
        tokens = self.burst
    }

    /// Whether one more event may pass at `now`.
    mutating func take(now: Date) -> Bool {
        guard rate > 0 else { return true }
        if let last { tokens = min(burst, tokens + max(0, now.timeIntervalSince(last)) * rate) }
        last = now
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}
