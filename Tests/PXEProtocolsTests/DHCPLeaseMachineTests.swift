import CMTypes
import PXEProtocols
import Testing

@Suite struct DHCPLeaseMachineTests {
    let server = IPv4Address("10.77.0.1")!
    let a = MACAddress("52:54:00:00:00:0a")!
    let b = MACAddress("52:54:00:00:00:0b")!
    let now: Int64 = 1_800_000_000

    func machine(first: String = "10.77.0.100", last: String = "10.77.0.102", statics: [MACAddress: IPv4Address] = [:]) -> DHCPLeaseMachine {
        DHCPLeaseMachine(pool: DHCPPool(server: server, subnetMask: IPv4Address("255.255.255.0")!, first: IPv4Address(first)!,
                                        last: IPv4Address(last)!, routers: [server], dnsServers: [server], domainName: "cluster.test",
                                        leaseTime: 3600, staticLeases: statics))
    }

    func message(_ type: DHCPMessageType, _ mac: MACAddress, xid: UInt32 = 1, requested: String? = nil, serverID: IPv4Address? = nil,
                 ciaddr: String? = nil) -> DHCPMessage {
        var m = DHCPMessage(op: .request, xid: xid, chaddr: mac.bytes)
        m.messageType = type
        if let requested { m.setOption(DHCPMessage.Code.requestedAddress, DHCPMessage.addressBytes(IPv4Address(requested)!)) }
        if let serverID { m.setOption(DHCPMessage.Code.serverIdentifier, DHCPMessage.addressBytes(serverID)) }
        if let ciaddr { m.ciaddr = IPv4Address(ciaddr)! }
        return m
    }

    @Test func discoverRequestAck() throws {
        var s = machine()
        let offer = try #require(s.handle(message(.discover, a, xid: 9), now: now).reply)
        #expect(offer.messageType == .offer && offer.xid == 9 && offer.yiaddr == IPv4Address("10.77.0.100"))
        #expect(offer.serverIdentifier == server && offer.uint32(DHCPMessage.Code.leaseTime) == 3600)
        #expect(offer.address(DHCPMessage.Code.subnetMask) == IPv4Address("255.255.255.0") && offer.text(DHCPMessage.Code.domainName) == "cluster.test")
        let out = s.handle(message(.request, a, xid: 9, requested: "10.77.0.100", serverID: server), now: now + 1)
        #expect(out.reply?.messageType == .ack && out.reply?.yiaddr == IPv4Address("10.77.0.100"))
        #expect(out.changed.first?.state == .bound && out.changed.first?.expires == now + 1 + 3600)
    }

    @Test func secondClientGetsAnotherAddressAndAFullPoolOffersNothing() throws {
        var s = machine(last: "10.77.0.101")
        #expect(s.handle(message(.discover, a), now: now).reply?.yiaddr == IPv4Address("10.77.0.100"))
        #expect(s.handle(message(.request, a, requested: "10.77.0.100", serverID: server), now: now).reply?.messageType == .ack)
        #expect(s.handle(message(.discover, b), now: now).reply?.yiaddr == IPv4Address("10.77.0.101"))
        #expect(s.handle(message(.request, b, requested: "10.77.0.101", serverID: server), now: now).reply?.messageType == .ack)
        let c = MACAddress("52:54:00:00:00:0c")!
        let out = s.handle(message(.discover, c), now: now)
        #expect(out.reply == nil && out.note.contains("no address left"))
    }

    @Test func offersNobodyTookUpDoNotKeepAClientOut() throws {
        var s = machine(last: "10.77.0.101")
        // Two clients that DISCOVER and never REQUEST hold the whole range.
        #expect(s.handle(message(.discover, a), now: now).reply?.yiaddr == IPv4Address("10.77.0.100"))
        #expect(s.handle(message(.discover, b), now: now + 1).reply?.yiaddr == IPv4Address("10.77.0.101"))
        // A third gets the oldest offer's address, and its REQUEST is ACKed.
        let c = MACAddress("52:54:00:00:00:0c")!
        #expect(s.handle(message(.discover, c), now: now + 2).reply?.yiaddr == IPv4Address("10.77.0.100"))
        #expect(s.handle(message(.request, c, requested: "10.77.0.100", serverID: server), now: now + 3).reply?.messageType == .ack)
        // The first client REQUESTs its old offer after all: refused, it starts over.
        #expect(s.handle(message(.request, a, requested: "10.77.0.100", serverID: server), now: now + 4).reply?.messageType == .nak)
        // An offer not taken up frees its address after offerHold.
        let d = MACAddress("52:54:00:00:00:0d")!
        #expect(s.handle(message(.discover, d), now: now + s.offerHold + 2).reply?.yiaddr == IPv4Address("10.77.0.101"))
    }

    @Test func atScale_thousandsOfMadeUpClientsThenARealOne() throws {
        var s = machine(first: "10.77.0.10", last: "10.77.0.59", statics: Dictionary(uniqueKeysWithValues: (0..<200).map {
            (MACAddress(bytes: [0x52, 0x54, 0, 1, UInt8($0 >> 8), UInt8($0 & 0xff)])!, IPv4Address(rawValue: IPv4Address("10.77.1.0")!.rawValue + UInt32($0)))
        }))
        for i in 0..<5000 {
            _ = s.handle(message(.discover, MACAddress(bytes: [0x02, 0, 0, 0, UInt8(i >> 8), UInt8(i & 0xff)])!), now: now)
        }
        let real = MACAddress("52:54:00:77:00:01")!
        let offer = try #require(s.handle(message(.discover, real), now: now + 1).reply)
        #expect(offer.messageType == .offer && s.pool.contains(offer.yiaddr))
        let ack = s.handle(message(.request, real, requested: offer.yiaddr.description, serverID: server), now: now + 2).reply
        #expect(ack?.messageType == .ack && ack?.yiaddr == offer.yiaddr)
    }

    @Test func requestedAddressIsHonouredWhenFree() {
        var s = machine()
        #expect(s.handle(message(.discover, a, requested: "10.77.0.102"), now: now).reply?.yiaddr == IPv4Address("10.77.0.102"))
        #expect(s.handle(message(.discover, b, requested: "10.77.0.102"), now: now).reply?.yiaddr == IPv4Address("10.77.0.100"))
    }

    @Test func staticLeaseAlwaysAndOnlyForItsMAC() {
        var s = machine(statics: [b: IPv4Address("10.77.0.50")!])
        #expect(s.handle(message(.discover, b), now: now).reply?.yiaddr == IPv4Address("10.77.0.50"))
        #expect(s.handle(message(.request, b, requested: "10.77.0.50", serverID: server), now: now).reply?.messageType == .ack)
        #expect(s.handle(message(.request, a, requested: "10.77.0.50"), now: now).reply?.messageType == .nak)
    }

    @Test func sameClientKeepsItsAddressAcrossReleaseAndRestart() {
        var s = machine()
        _ = s.handle(message(.discover, a), now: now)
        _ = s.handle(message(.request, a, requested: "10.77.0.100", serverID: server), now: now)
        _ = s.handle(message(.discover, b), now: now)
        #expect(s.handle(message(.release, a, ciaddr: "10.77.0.100"), now: now + 5).changed.first?.state == .released)
        #expect(s.handle(message(.discover, a), now: now + 10).reply?.yiaddr == IPv4Address("10.77.0.100"))
        // A server restarted from its stored leases knows the client too.
        var restarted = DHCPLeaseMachine(pool: s.pool, leases: Array(s.leases.values))
        #expect(restarted.handle(message(.discover, b), now: now + 20).reply?.yiaddr == IPv4Address("10.77.0.101"))
    }

    @Test func initRebootIsConfirmedOrRefused() {
        var s = machine()
        #expect(s.handle(message(.request, a, requested: "10.77.0.101"), now: now).reply?.messageType == .ack)
        #expect(s.handle(message(.request, b, requested: "10.77.0.101"), now: now).reply?.messageType == .nak)
        let off = s.handle(message(.request, b, requested: "192.168.1.5"), now: now)
        #expect(off.reply?.messageType == .nak && off.note.contains("not on this network"))
    }

    @Test func renewalExtendsOnlyTheClientsOwnLease() {
        var s = machine()
        _ = s.handle(message(.request, a, requested: "10.77.0.100"), now: now)
        let renewed = s.handle(message(.request, a, ciaddr: "10.77.0.100"), now: now + 1800)
        #expect(renewed.reply?.messageType == .ack && renewed.changed.first?.expires == now + 1800 + 3600)
        #expect(s.handle(message(.request, b, ciaddr: "10.77.0.100"), now: now + 1800).reply?.messageType == .nak)
    }

    @Test func clientChoosingAnotherServerFreesOurOffer() {
        var s = machine(last: "10.77.0.100")
        _ = s.handle(message(.discover, a), now: now)
        let out = s.handle(message(.request, a, requested: "10.77.0.100", serverID: IPv4Address("10.77.0.2")!), now: now)
        #expect(out.reply == nil && out.note.contains("withdrawn"))
        #expect(s.handle(message(.discover, b), now: now).reply?.yiaddr == IPv4Address("10.77.0.100"))
    }

    @Test func declinedAddressStaysOutOfThePool() {
        var s = machine()
        _ = s.handle(message(.discover, a), now: now)
        #expect(s.handle(message(.decline, a, requested: "10.77.0.100"), now: now).changed.first?.state == .declined)
        #expect(s.handle(message(.discover, a), now: now + 1).reply?.yiaddr == IPv4Address("10.77.0.101"))
        #expect(s.handle(message(.discover, b), now: now + s.declineHold + 1).reply?.yiaddr == IPv4Address("10.77.0.100"))
    }

    @Test func informGetsConfigurationWithoutALease() throws {
        var s = machine()
        let r = try #require(s.handle(message(.inform, a, ciaddr: "10.77.0.7"), now: now).reply)
        #expect(r.messageType == .ack && r.yiaddr.rawValue == 0 && r.ciaddr == IPv4Address("10.77.0.7"))
        #expect(r.option(DHCPMessage.Code.leaseTime) == nil && r.addresses(DHCPMessage.Code.router) == [server])
        #expect(s.leases.isEmpty)
    }

    @Test func repliesGoWhereRFC2131Says() throws {
        var s = machine()
        var relayed = message(.discover, a)
        relayed.giaddr = IPv4Address("10.78.0.1")!
        let r1 = try #require(s.handle(relayed, now: now).reply)
        #expect(DHCPLeaseMachine.destination(for: r1, request: relayed) == .relay(IPv4Address("10.78.0.1")!))
        var wantsBroadcast = message(.discover, b)
        wantsBroadcast.broadcast = true
        let r2 = try #require(s.handle(wantsBroadcast, now: now).reply)
        #expect(r2.broadcast && DHCPLeaseMachine.destination(for: r2, request: wantsBroadcast) == .broadcast)
        let plain = message(.discover, a, xid: 3)
        let r3 = try #require(s.handle(plain, now: now).reply)
        #expect(DHCPLeaseMachine.destination(for: r3, request: plain) == .hardware(r3.yiaddr, a))
        let renew = message(.request, a, ciaddr: r3.yiaddr.description)
        let r4 = try #require(s.handle(renew, now: now).reply)
        #expect(DHCPLeaseMachine.destination(for: r4, request: renew) == .unicast(r3.yiaddr))
    }

    @Test func realUdhcpcDiscoverGetsAnOffer() throws {
        var s = machine()
        let discover = try DHCPMessage(parsing: fixture("udhcpc-discover"))
        let offer = try #require(s.handle(discover, now: now).reply)
        #expect(offer.xid == discover.xid && offer.clientMAC == discover.clientMAC && offer.messageType == .offer)
        #expect(try DHCPMessage(parsing: offer.serialize()) == offer)
    }
}
