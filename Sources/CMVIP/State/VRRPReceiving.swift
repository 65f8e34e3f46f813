import CMTypes
import VRRP

/// What an instance does with a datagram that parsed (the packet's own checks of RFC 5798
/// 7.1 are `VRRPDatagram(parsing:)`'s): whether it is an advertisement for this instance at
/// all. Pure, so that every rule is tested without a socket.
public struct VRRPReceiveFilter: Sendable, Equatable {
    public var vrid: UInt8
    /// This router's own source address: its adverts come back to it in multicast mode.
    public var ownAddress: IPv4Address?
    /// Unicast mode when not empty: only these may advertise.
    public var unicastPeers: [IPv4Address]
    /// The virtual addresses as configured.
    public var addresses: Set<IPv4Address>

    public init(vrid: UInt8, ownAddress: IPv4Address?, unicastPeers: [IPv4Address], addresses: Set<IPv4Address>) {
        self.vrid = vrid
        self.ownAddress = ownAddress
        self.unicastPeers = unicastPeers
        self.addresses = addresses
    }

    public enum Verdict: Sendable, Equatable {
        /// For this instance. `addressMismatch`: its address list differs from ours, which
        /// RFC 5798 7.1 makes a misconfiguration to count, not a reason to ignore the master.
        case accept(addressMismatch: Bool)
        /// Not for this instance: counted under `reason`; `log` says it when worth a line (an
        /// advert of another virtual router on the link, or our own, is normal and silent).
        case drop(reason: String, log: String?)
    }

    public func check(_ datagram: VRRPDatagram) -> Verdict {
        let advert = datagram.advertisement
        guard advert.vrid == vrid else { return .drop(reason: "other_vrid", log: nil) }
        if datagram.source == ownAddress { return .drop(reason: "own", log: nil) }
        if !unicastPeers.isEmpty, !unicastPeers.contains(datagram.source) {
            return .drop(reason: "unknown_peer", log: "dropped an advertisement from \(datagram.source): not in unicast_peers")
        }
        if unicastPeers.isEmpty, datagram.destination != VRRP.multicastGroup {
            return .drop(reason: "bad_destination",
                         log: "dropped an advertisement from \(datagram.source) to \(datagram.destination): multicast mode expects 224.0.0.18")
        }
        return .accept(addressMismatch: Set(advert.addresses) != addresses)
    }
}

/// keepalived's tracking: each tracked check or interface that is down lowers the priority
/// by the weight, to no less than 1 (0 would say "leaving"). The owner's 255 is never lowered
/// (the configuration refuses tracking with it).
public enum VRRPTracking {
    public static func priority(configured: Int, down: Int, weight: Int) -> UInt8 {
        UInt8(clamping: max(configured - down * weight, 1))
    }
}

/// When gratuitous ARPs go out after becoming master: a burst of `count`, `interval` apart
/// (all at once with 0), and with `repeatAfter` a second burst that long after, for neighbours
/// that ignored the first (Linux ignores an update within a second of the last).
public struct GratuitousARPSchedule: Sendable, Equatable {
    public var count: Int
    public var interval: Duration
    public var repeatAfter: Duration

    /// ARPs left in the current burst, when the next is due, and when the second burst starts.
    public private(set) var remaining = 0
    public private(set) var next: ContinuousClock.Instant?
    public private(set) var repeatAt: ContinuousClock.Instant?

    public init(count: Int, interval: Duration, repeatAfter: Duration) {
        self.count = count
        self.interval = interval
        self.repeatAfter = repeatAfter
    }

    /// The earliest time something is due; nil when nothing is.
    public var deadline: ContinuousClock.Instant? { [next, repeatAt].compactMap { $0 }.min() }

    /// Became master: the first burst starts now, the second is scheduled.
    public mutating func becameMaster(now: ContinuousClock.Instant) {
        repeatAt = repeatAfter > .zero ? now + repeatAfter : nil
        startBurst(now: now)
    }

    /// No longer master: nothing more goes out.
    public mutating func stop() {
        remaining = 0
        next = nil
        repeatAt = nil
    }

    /// How many ARPs to send now (each one is one ARP per virtual address).
    public mutating func due(now: ContinuousClock.Instant) -> Int {
        if let r = repeatAt, r <= now {
            repeatAt = nil
            startBurst(now: now)
        }
        guard let n = next, n <= now, remaining > 0 else { return 0 }
        let send = interval == .zero ? remaining : 1
        remaining -= send
        next = remaining > 0 ? now + interval : nil
        return send
    }

    private mutating func startBurst(now: ContinuousClock.Instant) {
        remaining = count
        next = count > 0 ? now : nil
    }
}
