import CMTypes
import VRRP

/// The VRRPv3 router of one virtual router, RFC 5798 section 6.4, as a pure type: events in,
/// actions out. The shell (`VRRPInstanceRunner`) owns the socket, the timer and the addresses
/// and does what the actions say. At most one timer runs at a time: Master_Down_Timer in
/// Backup, Adver_Timer in Master.
public struct VRRPStateMachine: Sendable {
    public enum State: String, Sendable, Codable {
        /// RFC 5798 "Initialize": not started, or stopped.
        case initialize
        case backup
        case master
        /// The instance's interface is down: like Initialize, waiting for the link (keepalived's FAULT).
        case fault
    }

    public enum Timer: Sendable, Equatable {
        case masterDown
        case adver
    }

    public struct Configuration: Sendable, Equatable {
        /// Priority as configured (1…255; 255 = address owner).
        public var priority: UInt8
        /// Advertisement_Interval in centiseconds.
        public var advertisementInterval: UInt16
        public var preempt: Bool
        /// Preempt a lower-priority master only after it has been seen this long (keepalived's preempt_delay).
        public var preemptDelay: Duration
        /// This router's primary IPv4 address on the interface: the tie-breaker (6.4.3).
        public var primaryAddress: IPv4Address

        public init(priority: UInt8, advertisementInterval: UInt16, preempt: Bool = true, preemptDelay: Duration = .zero, primaryAddress: IPv4Address) {
            self.priority = priority
            self.advertisementInterval = advertisementInterval
            self.preempt = preempt
            self.preemptDelay = preemptDelay
            self.primaryAddress = primaryAddress
        }
    }

    public enum Event: Sendable, Equatable {
        case startup(now: ContinuousClock.Instant)
        case shutdown
        case interfaceDown
        case interfaceUp(now: ContinuousClock.Instant)
        case timerFired(Timer, now: ContinuousClock.Instant)
        /// A validated ADVERTISEMENT for this VRID from another router.
        case advertisement(priority: UInt8, maxAdvertInterval: UInt16, source: IPv4Address, now: ContinuousClock.Instant)
        /// Tracking changed the priority this router advertises (the owner's 255 never changes).
        case priorityChanged(UInt8)
        /// Preemption is held back (with why), or no longer (nil): while held, a Backup treats
        /// a lower-priority master as with `preempt = false`. It still becomes master when no
        /// master is heard at all.
        case preemptHold(String?)
    }

    public enum Action: Sendable, Equatable {
        case sendAdvertisement(priority: UInt8)
        /// (Re)arms the one timer; replaces any timer running.
        case setTimer(Timer, after: Duration)
        case cancelTimer
        /// Become the master: configure the virtual addresses on the interface.
        case addAddresses
        /// Broadcast gratuitous ARP for each virtual address (6.4.1, 6.4.2).
        case sendGratuitousARP
        case removeAddresses
        case transition(from: State, to: State, reason: String)
    }

    public private(set) var state: State = .initialize
    public private(set) var configuration: Configuration
    /// The priority advertised now: the configured one, lowered by tracking.
    public private(set) var priority: UInt8
    /// Master_Adver_Interval in centiseconds: the master's advertised interval (Backup) or ours.
    public private(set) var masterAdvertInterval: UInt16
    /// The current master's address as last seen (ours while Master).
    public private(set) var masterAddress: IPv4Address?
    /// Since when a lower-priority master has been seen while preempt_delay holds us back.
    private var lowerMasterSeenSince: ContinuousClock.Instant?
    /// When a split brain was last reported (another master heard while we are master).
    private var splitBrainReported: ContinuousClock.Instant?
    /// Why preemption is held back now (`preemptHold`); nil: it is not.
    public private(set) var preemptHeld: String?

    public init(configuration: Configuration) {
        self.configuration = configuration
        self.priority = configuration.priority
        self.masterAdvertInterval = configuration.advertisementInterval
    }

    /// Skew_Time (section 6.1): ((256 - Priority) * Master_Adver_Interval) / 256.
    public var skewTime: Duration {
        .microseconds((256 - Int64(priority)) * Int64(masterAdvertInterval) * 10_000 / 256)
    }

    /// Master_Down_Interval (section 6.1): (3 * Master_Adver_Interval) + Skew_Time.
    public var masterDownInterval: Duration {
        .microseconds(3 * Int64(masterAdvertInterval) * 10_000) + skewTime
    }

    public var advertisementInterval: Duration { .microseconds(Int64(configuration.advertisementInterval) * 10_000) }

    public mutating func handle(_ event: Event) -> [Action] {
        switch (state, event) {
        case (.initialize, .startup(let now)), (.fault, .interfaceUp(let now)):
            return startup(now: now)
        case (.initialize, .interfaceDown):
            return move(to: .fault, "interface down")
        case (.fault, .shutdown):
            return move(to: .initialize, "shutdown")
        case (.initialize, .priorityChanged(let p)), (.fault, .priorityChanged(let p)):
            setPriority(p)
            return []
        case (_, .preemptHold(let reason)):
            preemptHeld = reason
            // A lower master seen during the hold starts preempt_delay afresh once it ends.
            lowerMasterSeenSince = nil
            return []
        case (.initialize, _), (.fault, _):
            return []

        case (.backup, .shutdown):
            // 6.4.2: cancel the Master_Down_Timer, transition to Initialize.
            return [.cancelTimer] + move(to: .initialize, "shutdown")
        case (.backup, .interfaceDown):
            return [.cancelTimer] + move(to: .fault, "interface down")
        case (.backup, .timerFired(.masterDown, _)):
            return becomeMaster(reason: "no advertisement for Master_Down_Interval \(format(masterDownInterval))")
        case (.backup, .advertisement(let advPriority, let advInterval, let source, let now)):
            return backupReceived(priority: advPriority, interval: advInterval, source: source, now: now)
        case (.backup, .priorityChanged(let p)):
            setPriority(p)
            return []

        case (.master, .shutdown):
            // 6.4.3: cancel the Adver_Timer, send an ADVERTISEMENT with priority 0, go to Initialize.
            return [.cancelTimer, .sendAdvertisement(priority: 0), .removeAddresses] + move(to: .initialize, "shutdown")
        case (.master, .interfaceDown):
            return [.cancelTimer, .removeAddresses] + move(to: .fault, "interface down")
        case (.master, .timerFired(.adver, _)):
            return [.sendAdvertisement(priority: priority), .setTimer(.adver, after: advertisementInterval)]
        case (.master, .advertisement(let advPriority, let advInterval, let source, _)):
            if advPriority == 0 {
                // The other master is leaving: make ourselves heard at once.
                return [.sendAdvertisement(priority: priority), .setTimer(.adver, after: advertisementInterval)]
            }
            if advPriority > priority || (advPriority == priority && source > configuration.primaryAddress) {
                masterAdvertInterval = advInterval
                masterAddress = source
                return [.cancelTimer, .removeAddresses, .setTimer(.masterDown, after: masterDownInterval)]
                    + move(to: .backup, "\(source) advertises priority \(advPriority) (ours \(priority))")
            }
            // Another master that loses to us: both were master (a partition that healed, or
            // one that came up without hearing us). It goes to backup on our next advert; we
            // stay, and say so once, so that this master's role takes a new epoch, newer than
            // anything the other wrote while it was master too.
            if case .advertisement(_, _, _, let now) = event, splitBrainReported.map({ now - $0 > .seconds(1) }) ?? true {
                splitBrainReported = now
                return [.transition(from: .master, to: .master, reason: "split brain: \(source) was master too (priority \(advPriority), ours \(priority)); this master stays")]
            }
            return []
        case (.master, .priorityChanged(let p)):
            setPriority(p)
            // Tell the backups now, so that one with preemption takes over without waiting.
            return [.sendAdvertisement(priority: priority), .setTimer(.adver, after: advertisementInterval)]

        case (.backup, .startup), (.master, .startup), (.backup, .interfaceUp), (.master, .interfaceUp),
             (.backup, .timerFired(.adver, _)), (.master, .timerFired(.masterDown, _)):
            return []
        }
    }

    // MARK: Transitions

    private mutating func startup(now: ContinuousClock.Instant) -> [Action] {
        lowerMasterSeenSince = nil
        if priority == VRRP.ownerPriority {
            // 6.4.1: the address owner becomes master at once.
            return becomeMaster(reason: "address owner (priority 255)")
        }
        // 6.4.1: Master_Adver_Interval = Advertisement_Interval, Master_Down_Timer = Master_Down_Interval.
        masterAdvertInterval = configuration.advertisementInterval
        masterAddress = nil
        return [.setTimer(.masterDown, after: masterDownInterval)] + move(to: .backup, state == .fault ? "interface up" : "startup")
    }

    private mutating func becomeMaster(reason: String) -> [Action] {
        masterAdvertInterval = configuration.advertisementInterval
        masterAddress = configuration.primaryAddress
        lowerMasterSeenSince = nil
        // 6.4.1 / 6.4.2: send an ADVERTISEMENT, broadcast gratuitous ARP, set the Adver_Timer.
        // The advert goes first: the other routers' timers are running, and configuring the
        // addresses (rtnetlink) may take a moment.
        return [.sendAdvertisement(priority: priority), .addAddresses, .sendGratuitousARP, .setTimer(.adver, after: advertisementInterval)]
            + move(to: .master, reason)
    }

    private mutating func backupReceived(priority advPriority: UInt8, interval: UInt16, source: IPv4Address, now: ContinuousClock.Instant) -> [Action] {
        if advPriority == 0 {
            // 6.4.2: the master is leaving; take over after Skew_Time.
            masterAddress = nil
            return [.setTimer(.masterDown, after: skewTime)]
        }
        let preempting = configuration.preempt && preemptHeld == nil
        var accept = !preempting || advPriority >= priority
        if !accept, configuration.preemptDelay > .zero {
            let since = lowerMasterSeenSince ?? now
            lowerMasterSeenSince = since
            accept = now - since < configuration.preemptDelay
        }
        guard accept else {
            // Preempt: discard, so the Master_Down_Timer runs out.
            return []
        }
        if advPriority >= priority || !preempting { lowerMasterSeenSince = nil }
        masterAdvertInterval = interval
        masterAddress = source
        return [.setTimer(.masterDown, after: masterDownInterval)]
    }

    private mutating func setPriority(_ p: UInt8) {
        // The owner always advertises 255; others stay within 1…254 so that tracking never
        // turns a router into the owner or into one that says "leaving".
        if configuration.priority == VRRP.ownerPriority { return }
        priority = min(max(p, 1), 254)
    }

    private mutating func move(to next: State, _ reason: String) -> [Action] {
        let from = state
        state = next
        if next != .master, next != .backup { masterAddress = nil }
        return [.transition(from: from, to: next, reason: reason)]
    }

    private func format(_ d: Duration) -> String {
        let ms = Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
        return ms.truncatingRemainder(dividingBy: 1) == 0 ? "\(Int(ms)) ms" : "\((ms * 10).rounded() / 10) ms"
    }
}

