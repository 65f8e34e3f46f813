import CMTypes
import Testing
@testable import CMVIP

/// RFC 5798 section 6.4, transition by transition. No sockets, no clock: instants are made up.
@Suite struct VRRPStateMachineTests {
    let me = IPv4Address(10, 88, 0, 11)
    let higherIP = IPv4Address(10, 88, 0, 12)
    let lowerIP = IPv4Address(10, 88, 0, 10)
    let t0 = ContinuousClock.now

    func machine(priority: UInt8 = 100, interval: UInt16 = 100, preempt: Bool = true, delay: Duration = .zero) -> VRRPStateMachine {
        VRRPStateMachine(configuration: .init(priority: priority, advertisementInterval: interval, preempt: preempt, preemptDelay: delay, primaryAddress: me))
    }

    func backup(priority: UInt8 = 100, interval: UInt16 = 100, preempt: Bool = true, delay: Duration = .zero) -> VRRPStateMachine {
        var m = machine(priority: priority, interval: interval, preempt: preempt, delay: delay)
        _ = m.handle(.startup(now: t0))
        return m
    }

    func master(priority: UInt8 = 100, interval: UInt16 = 100) -> VRRPStateMachine {
        var m = backup(priority: priority, interval: interval)
        _ = m.handle(.timerFired(.masterDown, now: t0 + .seconds(4)))
        return m
    }

    func advert(_ priority: UInt8, interval: UInt16 = 100, from source: IPv4Address, at offset: Duration = .seconds(1)) -> VRRPStateMachine.Event {
        .advertisement(priority: priority, maxAdvertInterval: interval, source: source, now: t0 + offset)
    }

    // MARK: 6.1 parameters

    @Test(arguments: [
        // priority, interval (cs), Skew_Time µs, Master_Down_Interval µs
        (UInt8(100), UInt16(100), Int64(609_375), Int64(3_609_375)),
        (UInt8(150), UInt16(10), Int64(41_406), Int64(341_406)),
        (UInt8(100), UInt16(1), Int64(6_093), Int64(36_093)),
        (UInt8(254), UInt16(100), Int64(7_812), Int64(3_007_812)),
        (UInt8(1), UInt16(4095), Int64(40_790_039), Int64(163_640_039)),
    ])
    func skewAndMasterDownInterval(priority: UInt8, interval: UInt16, skew: Int64, down: Int64) {
        let m = machine(priority: priority, interval: interval)
        #expect(m.skewTime == .microseconds(skew))
        #expect(m.masterDownInterval == .microseconds(down))
    }

    // MARK: 6.4.1 Initialize

    @Test func ownerStartsAsMaster() {
        var m = machine(priority: 255)
        let actions = m.handle(.startup(now: t0))
        #expect(actions == [.sendAdvertisement(priority: 255), .addAddresses, .sendGratuitousARP, .setTimer(.adver, after: .seconds(1)),
                            .transition(from: .initialize, to: .master, reason: "address owner (priority 255)")])
        #expect(m.state == .master)
        #expect(m.masterAddress == me)
    }

    @Test func othersStartAsBackupWithMasterDownTimer() {
        var m = machine(priority: 100)
        let actions = m.handle(.startup(now: t0))
        #expect(actions == [.setTimer(.masterDown, after: .microseconds(3_609_375)), .transition(from: .initialize, to: .backup, reason: "startup")])
        #expect(m.state == .backup)
    }

    @Test func initializeIgnoresEverythingButStartup() {
        var m = machine()
        #expect(m.handle(advert(200, from: higherIP)) == [])
        #expect(m.handle(.timerFired(.masterDown, now: t0)) == [])
        #expect(m.handle(.shutdown) == [])
        #expect(m.state == .initialize)
    }

    // MARK: 6.4.2 Backup

    @Test func backupShutdownGoesToInitialize() {
        var m = backup()
        #expect(m.handle(.shutdown) == [.cancelTimer, .transition(from: .backup, to: .initialize, reason: "shutdown")])
    }

    @Test func backupBecomesMasterWhenMasterDownTimerFires() {
        var m = backup()
        let actions = m.handle(.timerFired(.masterDown, now: t0 + .seconds(4)))
        #expect(actions.prefix(4) == [.sendAdvertisement(priority: 100), .addAddresses, .sendGratuitousARP, .setTimer(.adver, after: .seconds(1))])
        #expect(m.state == .master)
    }

    @Test func backupTakesOverAfterSkewTimeWhenMasterLeaves() {
        var m = backup()
        #expect(m.handle(advert(0, from: higherIP)) == [.setTimer(.masterDown, after: .microseconds(609_375))])
        #expect(m.state == .backup)
    }

    @Test func backupAdoptsMastersIntervalFromHigherOrEqualPriority() {
        for p: UInt8 in [100, 200] {
            var m = backup()
            // Master_Adver_Interval = 10 cs: Master_Down_Interval = 300 ms + 156/256 × 100 ms.
            #expect(m.handle(advert(p, interval: 10, from: higherIP)) == [.setTimer(.masterDown, after: .microseconds(360_937))])
            #expect(m.masterAdvertInterval == 10)
            #expect(m.masterAddress == higherIP)
        }
    }

    @Test func backupWithoutPreemptAcceptsLowerPriorityMaster() {
        var m = backup(preempt: false)
        #expect(m.handle(advert(50, from: lowerIP)) == [.setTimer(.masterDown, after: .microseconds(3_609_375))])
    }

    @Test func backupWithPreemptDiscardsLowerPriorityMaster() {
        var m = backup(preempt: true)
        #expect(m.handle(advert(50, from: lowerIP)) == [])
        #expect(m.handle(.timerFired(.masterDown, now: t0 + .seconds(4))).last == .transition(from: .backup, to: .master, reason: "no advertisement for Master_Down_Interval 3609.4 ms"))
    }

    @Test func preemptDelayHoldsOffThenPreempts() {
        var m = backup(delay: .seconds(10))
        let reset: [VRRPStateMachine.Action] = [.setTimer(.masterDown, after: .microseconds(3_609_375))]
        #expect(m.handle(advert(50, from: lowerIP, at: .seconds(1))) == reset)
        #expect(m.handle(advert(50, from: lowerIP, at: .seconds(10))) == reset)
        #expect(m.handle(advert(50, from: lowerIP, at: .seconds(11))) == [])
    }

    @Test func aHeldPreemptionAcceptsTheLowerMasterUntilReleased() {
        var m = backup(delay: .seconds(2))
        let reset: [VRRPStateMachine.Action] = [.setTimer(.masterDown, after: .microseconds(3_609_375))]
        #expect(m.handle(.preemptHold("the volume is not whole")) == [])
        #expect(m.preemptHeld == "the volume is not whole")
        // Held: like preempt = false, the lower master's adverts keep this router a backup,
        // however long they go on.
        #expect(m.handle(advert(50, from: lowerIP, at: .seconds(1))) == reset)
        #expect(m.handle(advert(50, from: lowerIP, at: .seconds(30))) == reset)
        #expect(m.state == .backup)
        // Released: preempt_delay counts from the first lower advert after the hold, not before.
        #expect(m.handle(.preemptHold(nil)) == [])
        #expect(m.handle(advert(50, from: lowerIP, at: .seconds(31))) == reset)
        #expect(m.handle(advert(50, from: lowerIP, at: .seconds(32.5))) == reset)
        #expect(m.handle(advert(50, from: lowerIP, at: .seconds(33.5))) == [])
        #expect(m.handle(.timerFired(.masterDown, now: t0 + .seconds(37))).last == .transition(from: .backup, to: .master, reason: "no advertisement for Master_Down_Interval 3609.4 ms"))
    }

    @Test func aHeldPreemptionStillTakesOverWhenNoMasterIsHeard() {
        var m = backup()
        _ = m.handle(.preemptHold("cm-replicad cannot be reached"))
        #expect(m.handle(.timerFired(.masterDown, now: t0 + .seconds(4))).last == .transition(from: .backup, to: .master, reason: "no advertisement for Master_Down_Interval 3609.4 ms"))
        // A master keeps its role whatever the hold: a higher master still takes over from it.
        #expect(m.handle(advert(50, from: lowerIP)) != [])
        #expect(m.state == .master)
    }

    @Test func backupIgnoresAdverTimer() {
        var m = backup()
        #expect(m.handle(.timerFired(.adver, now: t0)) == [])
    }

    // MARK: 6.4.3 Master

    @Test func masterAdvertisesOnAdverTimer() {
        var m = master()
        #expect(m.handle(.timerFired(.adver, now: t0 + .seconds(5))) == [.sendAdvertisement(priority: 100), .setTimer(.adver, after: .seconds(1))])
    }

    @Test func masterShutdownSendsPriorityZero() {
        var m = master()
        #expect(m.handle(.shutdown) == [.cancelTimer, .sendAdvertisement(priority: 0), .removeAddresses,
                                        .transition(from: .master, to: .initialize, reason: "shutdown")])
    }

    @Test func masterAnswersALeavingMasterAtOnce() {
        var m = master()
        #expect(m.handle(advert(0, from: higherIP)) == [.sendAdvertisement(priority: 100), .setTimer(.adver, after: .seconds(1))])
        #expect(m.state == .master)
    }

    @Test func masterYieldsToHigherPriority() {
        var m = master()
        let actions = m.handle(advert(150, interval: 10, from: lowerIP))
        #expect(actions == [.cancelTimer, .removeAddresses, .setTimer(.masterDown, after: .microseconds(360_937)),
                            .transition(from: .master, to: .backup, reason: "10.88.0.10 advertises priority 150 (ours 100)")])
        #expect(m.masterAddress == lowerIP)
    }

    @Test func equalPriorityGoesToTheHigherAddress() {
        var m = master()
        #expect(m.handle(advert(100, from: lowerIP)) == [.transition(from: .master, to: .master,
                                                                      reason: "split brain: 10.88.0.10 was master too (priority 100, ours 100); this master stays")])
        #expect(m.state == .master)
        #expect(m.handle(advert(100, from: higherIP)).last == .transition(from: .master, to: .backup, reason: "10.88.0.12 advertises priority 100 (ours 100)"))
    }

    /// RFC 9568 6.4.3 discards it; we also say once that there were two masters, so that
    /// cm-vipd gives the surviving master's role a new epoch (newer than the other's).
    @Test func masterDiscardsLowerPriorityAndReportsTheSplitBrainOnce() {
        var m = master()
        #expect(m.handle(advert(99, from: higherIP)) == [.transition(from: .master, to: .master,
                                                                      reason: "split brain: 10.88.0.12 was master too (priority 99, ours 100); this master stays")])
        #expect(m.state == .master)
        #expect(m.handle(advert(99, from: higherIP)) == [])
        #expect(m.handle(advert(99, from: higherIP, at: .seconds(3))).count == 1)
    }

    @Test func masterIgnoresMasterDownTimer() {
        var m = master()
        #expect(m.handle(.timerFired(.masterDown, now: t0)) == [])
    }

    // MARK: Fault (interface) and tracking

    @Test func interfaceDownFaultsAndRecoversAsBackup() {
        var m = master()
        #expect(m.handle(.interfaceDown) == [.cancelTimer, .removeAddresses, .transition(from: .master, to: .fault, reason: "interface down")])
        #expect(m.handle(.timerFired(.adver, now: t0)) == [])
        #expect(m.handle(.interfaceUp(now: t0)) == [.setTimer(.masterDown, after: .microseconds(3_609_375)),
                                                   .transition(from: .fault, to: .backup, reason: "interface up")])
        var b = backup()
        #expect(b.handle(.interfaceDown) == [.cancelTimer, .transition(from: .backup, to: .fault, reason: "interface down")])
        var i = machine()
        #expect(i.handle(.interfaceDown) == [.transition(from: .initialize, to: .fault, reason: "interface down")])
    }

    @Test func trackingLowersPriorityAndMasterTellsAtOnce() {
        var m = master()
        #expect(m.handle(.priorityChanged(50)) == [.sendAdvertisement(priority: 50), .setTimer(.adver, after: .seconds(1))])
        #expect(m.priority == 50)
        // Now a backup of 100 with preemption would discard our adverts and take over; a 60 one makes us yield.
        #expect(m.handle(advert(60, from: lowerIP)).last == .transition(from: .master, to: .backup, reason: "10.88.0.10 advertises priority 60 (ours 50)"))
    }

    @Test func trackingNeverMakesAnOwnerOrZero() {
        var m = backup()
        _ = m.handle(.priorityChanged(0))
        #expect(m.priority == 1)
        _ = m.handle(.priorityChanged(255))
        #expect(m.priority == 254)
        var owner = machine(priority: 255)
        _ = owner.handle(.priorityChanged(10))
        #expect(owner.priority == 255)
    }

    /// Partition heal: two masters hear each other; exactly one stays, at the first advert.
    @Test func partitionHealLeavesOneMaster() {
        var a = master(priority: 100)
        var b = VRRPStateMachine(configuration: .init(priority: 100, advertisementInterval: 100, primaryAddress: higherIP))
        _ = b.handle(.startup(now: t0))
        _ = b.handle(.timerFired(.masterDown, now: t0 + .seconds(4)))
        #expect(a.state == .master && b.state == .master)
        _ = a.handle(advert(100, from: higherIP))
        _ = b.handle(advert(100, from: me))
        #expect(a.state == .backup)
        #expect(b.state == .master)
    }
}
