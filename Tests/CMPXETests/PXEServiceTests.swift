import CMConfig
@testable import CMPXE
import CMTypes
import CMWire
import Foundation
import Logging
import PXEProtocols
import Testing

/// The service's DHCP and inventory logic on a temporary state directory, no sockets.
@Suite final class PXEServiceTests {
    let dir: String
    let from = IPv4Endpoint(address: IPv4Address(rawValue: 0), port: 68)
    let logger = Logger(label: "test")

    init() throws {
        dir = NSTemporaryDirectory() + "cm-pxe-unit-\(UInt64.random(in: 0...UInt64.max))"
        try FileManager.default.createDirectory(atPath: dir + "/images/debian", withIntermediateDirectories: true)
        for f in ["vmlinuz", "initrd.img"] { try Data("x".utf8).write(to: URL(fileURLWithPath: dir + "/images/debian/" + f)) }
    }

    deinit { try? FileManager.default.removeItem(atPath: dir) }

    func service(_ config: PxedConfig) throws -> PXEService {
        var c = config
        c.pxed.imagesDirectory = dir + "/images"
        return try PXEService(config: c, stateDirectory: dir, events: EventHub(), logger: logger)
    }

    func exchange(_ s: PXEService, _ m: DHCPMessage, port: UInt16 = 67, from: IPv4Endpoint? = nil) throws -> (DHCPMessage, IPv4Endpoint)? {
        guard let out = s.handleDHCP(m.serialize()[...], port: port, from: from ?? self.from) else { return nil }
        return (try DHCPMessage(parsing: out.bytes), out.to)
    }

    @Test func aPXEClientIsDiscoveredGetsItsAddressNameAndBootFileAndKeepsThemAcrossRestarts() throws {
        let s = try service(try pxedConfig())
        let (offer, to) = try #require(try exchange(s, pxeMessage(.discover, mac: "52:54:00:00:00:01")))
        #expect(offer.messageType == .offer && offer.yiaddr == IPv4Address("10.77.0.110") && to == PXEService.broadcast)
        #expect(offer.hostName == "node001" && offer.file == "undionly.kpxe" && offer.siaddr == IPv4Address("10.77.0.100"))
        var request = pxeMessage(.request, mac: "52:54:00:00:00:01", ipxe: true)
        request.setOption(DHCPMessage.Code.requestedAddress, DHCPMessage.addressBytes(offer.yiaddr))
        request.setOption(DHCPMessage.Code.serverIdentifier, DHCPMessage.addressBytes(IPv4Address("10.77.0.1")!))
        let (ack, _) = try #require(try exchange(s, request))
        #expect(ack.messageType == .ack && ack.yiaddr == offer.yiaddr && ack.file == "http://10.77.0.100:8067/boot/52-54-00-00-00-01.ipxe")
        #expect(s.nodes.map(\.name) == ["node001"] && s.nodes.first?.address == offer.yiaddr && s.nodes.first?.arch == "bios")

        // A laptop on the same network gets an address but is no node and gets no boot file.
        let (other, _) = try #require(try exchange(s, pxeMessage(.discover, mac: "52:54:00:00:00:09", arch: nil, pxe: false)))
        #expect(other.yiaddr == IPv4Address("10.77.0.111") && other.file.isEmpty && other.hostName == nil)
        #expect(s.nodes.count == 1)

        // Restart: same state directory, same answers.
        let again = try service(try pxedConfig())
        #expect(again.nodes.map(\.name) == ["node001"])
        let (offer2, _) = try #require(try exchange(again, pxeMessage(.discover, mac: "52:54:00:00:00:01", xid: 99)))
        #expect(offer2.yiaddr == IPv4Address("10.77.0.110") && offer2.hostName == "node001")
        let (second, _) = try #require(try exchange(again, pxeMessage(.discover, mac: "52:54:00:00:00:02", arch: 7)))
        #expect(second.hostName == "node002" && second.file == "ipxe.efi" && second.yiaddr == IPv4Address("10.77.0.112"))
        // The pool is full now: a third PXE client is still a node, but gets no offer.
        #expect(try exchange(again, pxeMessage(.discover, mac: "52:54:00:00:00:03")) == nil)
    }

    @Test func proxyModeAnswersPXEClientsWithBootInformationOnly() throws {
        let s = try service(try pxedConfig(mode: "proxy"))
        let (offer, to) = try #require(try exchange(s, pxeMessage(.discover, mac: "52:54:00:00:00:01", ipxe: true)))
        #expect(offer.messageType == .offer && offer.yiaddr.rawValue == 0 && to == PXEService.broadcast)
        #expect(offer.file == "http://10.77.0.100:8067/boot/52-54-00-00-00-01.ipxe" && offer.vendorClass == "PXEClient")
        #expect(try exchange(s, pxeMessage(.request, mac: "52:54:00:00:00:01")) == nil, "REQUEST on 67 belongs to the DHCP server")
        let client = IPv4Endpoint(address: IPv4Address("192.168.1.50")!, port: 68)
        var request = pxeMessage(.request, mac: "52:54:00:00:00:01", ipxe: true)
        request.ciaddr = client.address
        let (ack, ackTo) = try #require(try exchange(s, request, port: 4011, from: client))
        #expect(ack.messageType == .ack && ackTo == client && ack.ciaddr == client.address && ack.yiaddr.rawValue == 0)
        #expect(try exchange(s, pxeMessage(.discover, mac: "52:54:00:00:00:08", pxe: false)) == nil, "not a PXE client")
        #expect(s.nodes.map(\.name) == ["node001"])
    }

    @Test func standbyIsSilentAndMalformedDatagramsAreCounted() throws {
        let s = try service(try pxedConfig("follow_vipd = true\n"))
        #expect(try exchange(s, pxeMessage(.discover, mac: "52:54:00:00:00:01")) == nil)
        s.setActive(true)
        #expect(try exchange(s, pxeMessage(.discover, mac: "52:54:00:00:00:01")) != nil)
        for junk in [[UInt8](), [1, 1, 6], [UInt8](repeating: 0xff, count: 400)] {
            #expect(s.handleDHCP(junk[...], port: 67, from: from) == nil)
        }
        #expect(s.counters.value("dhcp_malformed") == 3)
        // Relayed from another subnet: this pool's addresses would not work there.
        var relayed = pxeMessage(.discover, mac: "52:54:00:00:00:02")
        relayed.giaddr = IPv4Address("10.99.0.1")!
        #expect(try exchange(s, relayed) == nil)
        relayed.giaddr = IPv4Address("10.77.0.254")!
        let (offer, to) = try #require(try exchange(s, relayed))
        #expect(offer.giaddr == relayed.giaddr && to == IPv4Endpoint(address: relayed.giaddr, port: 67))
    }

    @Test func bootScriptMarksBootingTakesTheOneShotImageAndTheFinalStageMarksBooted() throws {
        let s = try service(try pxedConfig())
        let mac = MACAddress("52:54:00:00:00:05")!
        let added = try s.add(NodeAddRequest(name: "db1", mac: mac, address: IPv4Address("10.77.0.50"), kernelArgs: "x=1"))
        #expect(added.state == .new && added.group == "default")
        _ = try s.set(NodeSetRequest(node: "db1", nextImage: "rescue"))
        let first = s.bootScript(mac: mac, from: IPv4Address("10.77.0.50")!)
        #expect(first.contains("image \"rescue\" for db1 has no vmlinuz"))
        let second = s.bootScript(mac: mac, from: IPv4Address("10.77.0.50")!)
        #expect(second.contains("/boot/52-54-00-00-00-05/debian/vmlinuz initrd=initrd.img console=ttyS0 x=1"))
        var n = try s.show("db1")
        #expect(n.state == .booting && n.bootCount == 2 && n.nextImage == nil && n.lastImage == "debian")
        s.fileSent(mac: mac, image: "debian", file: "vmlinuz")
        #expect(try s.show("db1").state == .booting, "the kernel is not the final stage when there is an initrd")
        s.fileSent(mac: mac, image: "debian", file: "initrd.img")
        n = try s.show("52:54:00:00:00:05")
        #expect(n.state == .booted)
    }

    @Test func inventoryEditsAreValidated() throws {
        let s = try service(try pxedConfig())
        let a = try s.add(NodeAddRequest(mac: MACAddress("52:54:00:00:00:01")!))
        #expect(a.name == "node001" && a.address == IPv4Address("10.77.0.110"))
        func code(_ work: () throws(WireError) -> NodeInfo) -> WireError.Code? {
            do { _ = try work(); return nil } catch { return error.code }
        }
        #expect(code { () throws(WireError) in try s.add(NodeAddRequest(name: "x", mac: a.mac)) } == .conflict)
        let mac2 = MACAddress("52:54:00:00:00:02")!
        #expect(code { () throws(WireError) in try s.add(NodeAddRequest(name: "node001", mac: mac2)) } == .conflict)
        #expect(code { () throws(WireError) in try s.add(NodeAddRequest(mac: mac2, address: a.address)) } == .conflict)
        #expect(code { () throws(WireError) in try s.add(NodeAddRequest(mac: mac2, address: IPv4Address("10.9.0.1"))) } == .invalidArgument)
        #expect(code { () throws(WireError) in try s.add(NodeAddRequest(mac: mac2, group: "nope")) } == .invalidArgument)
        #expect(code { () throws(WireError) in try s.add(NodeAddRequest(name: "bad name", mac: mac2)) } == .invalidArgument)
        let renamed = try s.set(NodeSetRequest(node: "node001", name: "web1", group: "gpu"))
        #expect(renamed.name == "web1" && renamed.group == "gpu")
        #expect(code { () throws(WireError) in try s.show("node001") } == .notFound)
        _ = try s.remove("web1")
        #expect(s.nodes.isEmpty)
        // Removal frees the address for the next one.
        let b = try s.add(NodeAddRequest(mac: mac2))
        #expect(b.name == "node001" && b.address == IPv4Address("10.77.0.110"))
    }
}
