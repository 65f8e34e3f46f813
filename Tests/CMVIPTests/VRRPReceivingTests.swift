import CMTypes
import Testing
import VRRP
@testable import CMVIP

/// The runner's pure parts: which datagrams are adverts for an instance (RFC 5798 7.1), the
/// tracking penalty, the gratuitous-ARP schedule. No socket, no clock.
@Suite struct VRRPReceiveFilterTests {
    let me = IPv4Address(10, 88, 0, 11)
    let peer = IPv4Address(10, 88, 0, 12)
    let vip = IPv4Address(10, 88, 0, 100)

    func datagram(vrid: UInt8 = 51, from source: IPv4Address? = nil, to destination: IPv4Address = VRRP.multicastGroup,
                  addresses: [IPv4Address]? = nil) -> VRRPDatagram {
        VRRPDatagram(source: source ?? peer, destination: destination,
                     advertisement: VRRPAdvertisement(vrid: vrid, priority: 100, maxAdvertInterval: 100, addresses: addresses ?? [vip]))
    }

    var multicast: VRRPReceiveFilter { VRRPReceiveFilter(vrid: 51, ownAddress: me, unicastPeers: [], addresses: [vip]) }

    @Test func anAdvertForThisVirtualRouterIsAccepted() {
        #expect(multicast.check(datagram()) == .accept(addressMismatch: false))
    }

    @Test func anotherVirtualRouterAndOurOwnEchoAreDroppedSilently() {
        #expect(multicast.check(datagram(vrid: 52)) == .drop(reason: "other_vrid", log: nil))
        #expect(multicast.check(datagram(from: me)) == .drop(reason: "own", log: nil))
    }

    @Test func multicastModeWantsTheVRRPGroup() {
        #expect(multicast.check(datagram(to: me))
            == .drop(reason: "bad_destination", log: "dropped an advertisement from 10.88.0.12 to 10.88.0.11: multicast mode expects 224.0.0.18"))
    }

    @Test func unicastModeTakesOnlyItsPeers() {
        let unicast = VRRPReceiveFilter(vrid: 51, ownAddress: me, unicastPeers: [peer], addresses: [vip])
        #expect(unicast.check(datagram(to: me)) == .accept(addressMismatch: false))
        #expect(unicast.check(datagram(from: IPv4Address(10, 88, 0, 66), to: me))
            == .drop(reason: "unknown_peer", log: "dropped an advertisement from 10.88.0.66: not in unicast_peers"))
    }

    @Test func aDifferentAddressListIsCountedNotIgnored() {
        #expect(multicast.check(datagram(addresses: [vip, IPv4Address(10, 88, 0, 101)])) == .accept(addressMismatch: true))
        // The order does not matter.
        let two = VRRPReceiveFilter(vrid: 51, ownAddress: me, unicastPeers: [], addresses: [vip, IPv4Address(10, 88, 0, 101)])
        #expect(two.check(datagram(addresses: [IPv4Address(10, 88, 0, 101), vip])) == .accept(addressMismatch: false))
    }
}

@Suite struct VRRPTrackingTests {
    @Test(arguments: [(150, 0, 50, 150), (150, 1, 50, 100), (150, 2, 50, 50), (150, 3, 50, 1), (100, 10, 254, 1)])
    func eachItemDownLowersByTheWeightToNoLessThanOne(configured: Int, down: Int, weight: Int, expected: Int) {
        #expect(VRRPTracking.priority(configured: configured, down: down, weight: weight) == UInt8(expected))
    }
}

@Suite struct GratuitousARPScheduleTests {
    let t0 = ContinuousClock.now

    @Test func withoutAnIntervalTheBurstGoesAtOnceAndRepeatsAfterTheDelay() {
        var g = GratuitousARPSchedule(count: 5, interval: .zero, repeatAfter: .seconds(5))
        g.becameMaster(now: t0)
        #expect(g.due(now: t0) == 5)
        #expect(g.due(now: t0 + .seconds(1)) == 0)
        #expect(g.deadline == t0 + .seconds(5))
        #expect(g.due(now: t0 + .seconds(5)) == 5)
        #expect(g.deadline == nil)
    }

    @Test func withAnIntervalOneGoesEachTime() {
        var g = GratuitousARPSchedule(count: 3, interval: .milliseconds(200), repeatAfter: .zero)
        g.becameMaster(now: t0)
        #expect(g.due(now: t0) == 1)
        #expect(g.deadline == t0 + .milliseconds(200))
        #expect(g.due(now: t0 + .milliseconds(100)) == 0)
        #expect(g.due(now: t0 + .milliseconds(200)) == 1)
        #expect(g.due(now: t0 + .milliseconds(400)) == 1)
        #expect(g.deadline == nil)
        #expect(g.due(now: t0 + .seconds(10)) == 0)
    }

    @Test func stoppingCancelsTheRestAndTheSecondBurst() {
        var g = GratuitousARPSchedule(count: 3, interval: .milliseconds(200), repeatAfter: .seconds(5))
        g.becameMaster(now: t0)
        #expect(g.due(now: t0) == 1)
        g.stop()
        #expect(g.deadline == nil)
        #expect(g.due(now: t0 + .seconds(6)) == 0)
    }

    @Test func noneConfiguredSendsNone() {
        var g = GratuitousARPSchedule(count: 0, interval: .zero, repeatAfter: .seconds(5))
        g.becameMaster(now: t0)
        #expect(g.due(now: t0) == 0)
        #expect(g.due(now: t0 + .seconds(5)) == 0)
    }
}
