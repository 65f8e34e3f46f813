import CMTypes
import PXEProtocols
import Foundation
import Testing

/// Real messages between busybox udhcpc and dnsmasq (Fixtures/README.md).
func fixture(_ name: String) throws -> [UInt8] {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/\(name).bin")
    return Array(try Data(contentsOf: url))
}

@Suite struct DHCPMessageTests {
    let client = MACAddress("ee:21:47:12:1b:86")!

    @Test func parsesUdhcpcDiscover() throws {
        let m = try DHCPMessage(parsing: fixture("udhcpc-discover"))
        #expect(m.op == .request && m.messageType == .discover)
        #expect(m.xid == 0xc2c8_c925 && m.clientMAC == client)
        #expect(m.vendorClass == "PXEClient:Arch:00007:UNDI:003016" && m.isPXEClient)
        #expect(m.hostName == "node042")
        #expect(m.parameterRequestList.contains(66) && m.parameterRequestList.contains(67))
        #expect(!m.isIPXE)
    }

    @Test func parsesDnsmasqOfferAndAck() throws {
        let offer = try DHCPMessage(parsing: fixture("dnsmasq-offer"))
        #expect(offer.op == .reply && offer.messageType == .offer && offer.xid == 0xc2c8_c925)
        #expect(offer.yiaddr == IPv4Address("10.199.77.145") && offer.siaddr == IPv4Address("10.199.77.1"))
        // The client asked for options 66 and 67, so dnsmasq put the boot file there, not in file/sname.
        #expect(offer.text(DHCPMessage.Code.bootfileName) == "ipxe.efi" && offer.text(DHCPMessage.Code.tftpServerName) == "master")
        #expect(offer.file.isEmpty && offer.sname.isEmpty)
        #expect(offer.serverIdentifier == IPv4Address("10.199.77.1"))
        let ack = try DHCPMessage(parsing: fixture("dnsmasq-ack"))
        #expect(ack.messageType == .ack && ack.uint32(DHCPMessage.Code.leaseTime) == 43200)
        #expect(ack.addresses(DHCPMessage.Code.router) == [IPv4Address("10.199.77.1")!])
        #expect(ack.address(DHCPMessage.Code.subnetMask) == IPv4Address("255.255.255.0"))
        #expect(ack.text(DHCPMessage.Code.domainName) == "cluster.test")
        #expect(ack.hostName == "node042")
    }

    @Test func parsesUdhcpcRequest() throws {
        let m = try DHCPMessage(parsing: fixture("udhcpc-request"))
        #expect(m.messageType == .request)
        #expect(m.requestedAddress == IPv4Address("10.199.77.145") && m.serverIdentifier == IPv4Address("10.199.77.1"))
    }

    @Test(arguments: ["udhcpc-discover", "dnsmasq-offer", "udhcpc-request", "dnsmasq-ack"])
    func serializeThenParseIsTheSameMessage(name: String) throws {
        let m = try DHCPMessage(parsing: fixture(name))
        #expect(try DHCPMessage(parsing: m.serialize()) == m)
    }

    @Test func dnsmasqRepliesComeOutByteForByte() throws {
        // dnsmasq writes its options in order and ends with END and no padding past 300 octets.
        for name in ["dnsmasq-offer", "dnsmasq-ack"] {
            let bytes = try fixture(name)
            #expect(try DHCPMessage(parsing: bytes).serialize() == bytes, "\(name)")
        }
    }

    @Test func builtOfferHasTheFieldsAClientNeeds() throws {
        var m = DHCPMessage(op: .reply, xid: 42, chaddr: client.bytes)
        m.messageType = .offer
        m.yiaddr = IPv4Address("10.77.0.21")!
        m.setOption(DHCPMessage.Code.serverIdentifier, DHCPMessage.addressBytes(IPv4Address("10.77.0.1")!))
        m.setOption(DHCPMessage.Code.leaseTime, DHCPMessage.uint32Bytes(3600))
        m.file = "undionly.kpxe"
        let bytes = m.serialize()
        #expect(bytes.count == DHCP.minimumLength)
        let back = try DHCPMessage(parsing: bytes)
        #expect(back.messageType == .offer && back.yiaddr == IPv4Address("10.77.0.21") && back.file == "undionly.kpxe")
        #expect(back.uint32(DHCPMessage.Code.leaseTime) == 3600 && back.clientMAC == client)
    }

    @Test func longOptionsAreSplitAndJoined() throws {
        var m = DHCPMessage(op: .reply, xid: 1, chaddr: client.bytes)
        m.messageType = .ack
        let long = Array(repeating: UInt8(ascii: "a"), count: 600)
        m.setOption(DHCPMessage.Code.vendorSpecific, long)
        #expect(try DHCPMessage(parsing: m.serialize()).option(DHCPMessage.Code.vendorSpecific) == long)
    }

    @Test func optionOverloadReadsFileAndSname() throws {
        var b = try fixture("udhcpc-discover")
        // Option 52 = 3 (file and sname hold options); put option 12 in file, 15 in sname.
        let end = b.lastIndex(of: 255)!
        b.insert(contentsOf: [52, 1, 3], at: end)
        let file = [12, 3] + Array("abc".utf8) + [255]
        let sname = [15, 2] + Array("xy".utf8) + [255]
        for (i, v) in file.enumerated() { b[108 + i] = v }
        for (i, v) in sname.enumerated() { b[44 + i] = v }
        let m = try DHCPMessage(parsing: b)
        #expect(m.hostName == "node042abc" && m.text(DHCPMessage.Code.domainName) == "xy")
        #expect(m.file.isEmpty && m.sname.isEmpty && m.option(DHCPMessage.Code.overload) == nil)
    }

    @Test func ipxeIsRecognised() throws {
        var m = DHCPMessage(op: .request, xid: 7, chaddr: client.bytes)
        m.messageType = .discover
        m.setOption(DHCPMessage.Code.userClass, Array("iPXE".utf8))
        #expect(m.isIPXE)
        m.setOption(DHCPMessage.Code.clientArchitecture, [0, 7])
        #expect(m.clientArchitectures == [7])
    }

    @Test(arguments: [
        (Array(repeating: UInt8(0), count: 100), "truncated"),
        ([3] + Array(repeating: UInt8(0), count: 300), "bad_op"),
        ([1, 1, 17] + Array(repeating: UInt8(0), count: 300), "bad_hardware_address"),
        ([1, 1, 6] + Array(repeating: UInt8(0), count: 300), "no_magic_cookie"),
    ])
    func badMessagesAreRefusedWithAReason(bytes: [UInt8], reason: String) {
        #expect(throws: DHCPParseError.self) { try DHCPMessage(parsing: bytes) }
        do {
            _ = try DHCPMessage(parsing: bytes)
        } catch {
            #expect(error.reason == reason)
        }
    }

    @Test func optionRunningPastTheEndIsRefused() throws {
        var b = try fixture("udhcpc-discover")
        let end = b.lastIndex(of: 255)!
        b[end] = 12
        b.append(200)
        do {
            _ = try DHCPMessage(parsing: b)
            Issue.record("accepted an option longer than the message")
        } catch {
            #expect(error.reason == "bad_option")
        }
    }
}
