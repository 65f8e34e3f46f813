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
        #expect(offer.hostName == nil && offer.file == "undionly.kpxe" && offer.siaddr == IPv4Address("10.77.0.100"))
        var request = pxeMessage(.request, mac: "52:54:00:00:00:01", ipxe: true)
        request.setOption(DHCPMessage.Code.requestedAddress, DHCPMessage.addressBytes(offer.yiaddr))
        request.setOption(DHCPMessage.Code.serverIdentifier, DHCPMessage.addressBytes(IPv4Address("10.77.0.1")!))
        let (ack, _) = try #require(try exchange(s, request))
        #expect(ack.messageType == .ack && ack.yiaddr == offer.yiaddr && ack.file == "http://10.77.0.100:8067/boot/52-54-00-00-00-01.ipxe")
        #expect(s.nodes.isEmpty, "DHCP alone makes no node")
        // It fetches its script from the address DHCP gave it: now it is a node, with that
        // address fixed and the architecture DHCP told.
        _ = s.bootScript(mac: MACAddress("52:54:00:00:00:01")!, from: ack.yiaddr)
        #expect(s.nodes.map(\.name) == ["node001"] && s.nodes.first?.address == offer.yiaddr && s.nodes.first?.arch == "bios")

        // A laptop on the same network gets an address but is no node and gets no boot file.
        let (other, _) = try #require(try exchange(s, pxeMessage(.discover, mac: "52:54:00:00:00:09", arch: nil, pxe: false)))
        #expect(other.yiaddr == IPv4Address("10.77.0.111") && other.file.isEmpty && other.hostName == nil)
        #expect(s.nodes.count == 1)

        // Restart: same state directory, same answers, the node's name in its offers.
        let again = try service(try pxedConfig())
        #expect(again.nodes.map(\.name) == ["node001"])
        let (offer2, _) = try #require(try exchange(again, pxeMessage(.discover, mac: "52:54:00:00:00:01", xid: 99)))
        #expect(offer2.yiaddr == IPv4Address("10.77.0.110") && offer2.hostName == "node001")
        let (second, _) = try #require(try exchange(again, pxeMessage(.discover, mac: "52:54:00:00:00:02", arch: 7)))
        #expect(second.file == "ipxe.efi" && second.yiaddr == IPv4Address("10.77.0.112"))
    }

    @Test func atScale_fiveThousandMadeUpClientsLeaveNoNodeAndARealOneStillBoots() throws {
        let s = try service(try pxedConfig())
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        var offers = 0
        for i in 0..<5000 {
            let fake = String(format: "02:00:00:00:%02x:%02x", i >> 8, i & 0xff)
            let at = start.addingTimeInterval(Double(i) / 1000)  // 1,000 a second for 5 s
            if s.handleDHCP(pxeMessage(.discover, mac: fake).serialize()[...], port: 67, from: from, now: at) != nil { offers += 1 }
        }
        // 100 a second (the default limit) plus the burst of 200 got through; none is a node.
        let limited = s.counters.value("dhcp_rate_limited")
        #expect((4200...4400).contains(limited) && offers == 5000 - limited, "\(limited) limited, \(offers) offers")
        #expect(s.nodes.isEmpty)
        // A real PXE client a second later: offered (the made-up clients' offers do not keep
        // it out), ACKed, and a node once it fetches its script.
        let later = start.addingTimeInterval(6)
        let real = "52:54:00:77:00:01"
        let offer = try #require(s.handleDHCP(pxeMessage(.discover, mac: real, arch: 7).serialize()[...], port: 67, from: from, now: later))
        let yiaddr = try DHCPMessage(parsing: offer.bytes).yiaddr
        var request = pxeMessage(.request, mac: real, arch: 7, ipxe: true)
        request.setOption(DHCPMessage.Code.requestedAddress, DHCPMessage.addressBytes(yiaddr))
        request.setOption(DHCPMessage.Code.serverIdentifier, DHCPMessage.addressBytes(IPv4Address("10.77.0.1")!))
        let ack = try #require(s.handleDHCP(request.serialize()[...], port: 67, from: from, now: later))
        #expect(try DHCPMessage(parsing: ack.bytes).messageType == .ack)
        _ = s.bootScript(mac: MACAddress(real)!, from: yiaddr)
        #expect(s.nodes.count == 1 && s.nodes.first?.arch == "uefi-x86_64" && s.nodes.first?.address == yiaddr)
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
        #expect(s.nodes.isEmpty, "a node only once it fetches its script")
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

    // MARK: What a request may record (issue 23)

    @Test func aScriptFetchNeitherDeletesNorRewritesAnotherNodeAndProxyAddressesAreObservations() throws {
        let config = try pxedConfig("boot_network = \"10.77.0.0/24\"\n", mode: "proxy")
        let s = try service(config)
        let a = IPv4Address("10.77.0.50")!, b = IPv4Address("10.77.0.51")!
        let web1 = try s.add(NodeAddRequest(name: "web1", mac: MACAddress("52:54:00:00:00:01")!, address: a, group: "gpu"))
        // A MAC address nobody knows fetches its script from web1's address.
        let stranger = MACAddress("52:54:00:00:00:66")!
        #expect(s.bootScript(mac: stranger, from: a).contains("#!ipxe"))
        let seen = try s.show(stranger.description)
        #expect(seen.address == nil && seen.seenAddress == a && seen.state == .booting)
        #expect(try s.show("web1") == web1, "web1 is untouched")
        // web1 itself boots from elsewhere: seen there; its fixed address stays.
        _ = s.bootScript(mac: web1.mac, from: b)
        #expect(try s.show("web1").address == a && s.show("web1").seenAddress == b)
        // The stranger moves to b: web1 loses the observation, nothing else.
        _ = s.bootScript(mac: stranger, from: b)
        #expect(try s.show("web1").seenAddress == nil && s.show("web1").address == a && s.show(stranger.description).seenAddress == b)

        // Restart on the same database: everything as it was.
        let again = try service(config)
        #expect(again.nodes.count == 2)
        let stored = try again.show("web1")
        #expect(stored.mac == web1.mac && stored.address == a && stored.group == "gpu" && stored.seenAddress == nil)
        #expect(try again.show(stranger.description).seenAddress == b)
    }

    @Test func scriptFetchesFromWhereNoNodeIsAreAnsweredButNotRecorded() throws {
        // Proxy mode: outside the boot network.
        let proxy = try service(try pxedConfig("boot_network = \"10.77.0.0/24\"\n", mode: "proxy"))
        let mac = MACAddress("52:54:00:00:00:07")!
        #expect(proxy.bootScript(mac: mac, from: IPv4Address("192.168.1.9")!).contains("#!ipxe"))
        #expect(proxy.nodes.isEmpty && proxy.counters.value("http_not_recorded") == 1)

        // Full DHCP: only from the address DHCP gave that MAC address.
        let s = try service(try pxedConfig())
        let db1 = try s.add(NodeAddRequest(name: "db1", mac: mac, address: IPv4Address("10.77.0.50")))
        _ = s.bootScript(mac: mac, from: IPv4Address("10.77.0.60")!)
        _ = s.bootScript(mac: MACAddress("52:54:00:00:00:08")!, from: IPv4Address("10.77.0.50")!)
        #expect(s.nodes == [db1] && s.counters.value("http_not_recorded") == 2)
        // A lease DHCP handed out is where that MAC address may fetch from.
        let other = "52:54:00:00:00:09"
        let (offer, _) = try #require(try exchange(s, pxeMessage(.discover, mac: other, pxe: false)))
        _ = s.bootScript(mac: MACAddress(other)!, from: offer.yiaddr)
        #expect(try s.show(other).state == .booting && s.show(other).address == offer.yiaddr)
        _ = s.bootScript(mac: mac, from: IPv4Address("10.77.0.50")!)
        #expect(try s.show("db1").state == .booting)

        // A standby master records nothing, not even the final stage.
        let standby = try service(try pxedConfig("follow_vipd = true\n"))
        _ = standby.bootScript(mac: mac, from: IPv4Address("10.77.0.50")!)
        standby.fileSent(mac: mac, image: "debian", file: "initrd.img")
        #expect(try standby.show("db1").state == .booting && standby.show("db1").bootCount == 1, "as the active master left it")
    }

    @Test func aSaveThatWouldTakeAnotherNodesAddressFailsAndDeletesNothing() throws {
        let inventory = try Inventory(path: dir + "/inv.sqlite")
        let a = IPv4Address("10.77.0.50")!
        let web1 = NodeInfo(name: "web1", mac: MACAddress("52:54:00:00:00:01")!, address: a, group: "default")
        try inventory.save(web1)
        let thief = NodeInfo(name: "node002", mac: MACAddress("52:54:00:00:00:02")!, address: a, group: "default")
        #expect(throws: InventoryConflict.self) { try inventory.save(thief) }
        let sameName = NodeInfo(name: "web1", mac: MACAddress("52:54:00:00:00:03")!, group: "default")
        #expect(throws: InventoryConflict.self) { try inventory.save(sameName) }
        // Several at once: all or none.
        let fine = NodeInfo(name: "node004", mac: MACAddress("52:54:00:00:00:04")!, group: "default")
        #expect(throws: InventoryConflict.self) { try inventory.save([fine, thief]) }
        #expect(try inventory.nodes() == [web1])
        // A rename is an update of the same MAC address's row.
        var renamed = web1
        renamed.name = "web9"
        try inventory.save(renamed)
        #expect(try inventory.nodes() == [renamed])
    }

    @Test func anImportAppliesAllOrNothing() throws {
        let s = try service(try pxedConfig())
        let web1 = try s.add(NodeAddRequest(name: "web1", mac: MACAddress("52:54:00:00:00:01")!, address: IPv4Address("10.77.0.50")))
        let good = NodeSpec(name: "imp1", mac: MACAddress("52:54:00:00:00:02")!, address: IPv4Address("10.77.0.60"))
        let clash = NodeSpec(name: "imp2", mac: MACAddress("52:54:00:00:00:03")!, address: IPv4Address("10.77.0.50"))
        #expect(throws: WireError.self) { try s.importNodes([good, clash]) }
        do { _ = try s.importNodes([good, clash]) } catch {
            #expect(error.code == .conflict && error.message.contains("entry 2 (52:54:00:00:00:03)") && error.message.contains("nothing imported"))
        }
        // Two entries of one file clash with each other: refused too.
        #expect(throws: WireError.self) { try s.importNodes([good, NodeSpec(name: "imp1", mac: MACAddress("52:54:00:00:00:04")!)]) }
        #expect(s.nodes == [web1])
        #expect(try service(try pxedConfig()).nodes == [web1], "nothing reached the database")

        let renamed = NodeSpec(name: "web2", mac: web1.mac)
        #expect(try s.importNodes([good, renamed]) == NodeImportReply(added: 1, updated: 1))
        #expect(s.nodes.map(\.name) == ["imp1", "web2"] && s.nodes.last?.address == web1.address)
        #expect(try service(try pxedConfig()).nodes.map(\.name) == ["imp1", "web2"])
    }

    @Test func atScale_twentyThousandNodesImportedInPartsAndListedInPages() throws {
        let s = try service(try pxedConfig(mode: "off"))
        let entries = (0..<20_000).map { i in
            NodeSpec(name: String(format: "n%05d", i), mac: MACAddress(bytes: [0x52, 0x54, 0, 1, UInt8(i >> 8), UInt8(i & 0xff)])!,
                     address: IPv4Address(rawValue: 0x0A64_0000 + UInt32(i)))
        }
        var staging: String?
        var reply = NodeImportReply(added: 0, updated: 0)
        for start in stride(from: 0, to: entries.count, by: NodeImportRequest.partSize) {
            let end = min(entries.count, start + NodeImportRequest.partSize)
            reply = try s.importNodes(NodeImportRequest(nodes: Array(entries[start..<end]), staging: staging, more: end < entries.count))
            if end < entries.count { #expect(reply.staging != nil && s.nodes.isEmpty, "parts are only kept") }
            staging = reply.staging
        }
        #expect(reply == NodeImportReply(added: 20_000, updated: 0))
        var listed: [NodeInfo] = []
        var cursor: String?
        repeat {
            let page = s.nodeList(NodeListRequest(cursor: cursor))
            #expect(page.nodes.count <= Paging.pageSize)
            listed += page.nodes
            cursor = page.next
        } while cursor != nil
        #expect(listed.map(\.name) == entries.map { $0.name! } && listed.map(\.address) == entries.map(\.address))
        #expect(try service(try pxedConfig(mode: "off")).nodes.count == 20_000, "all in the database")

        // A last part naming no import in progress, or one that expired, applies nothing.
        let late = NodeImportRequest(nodes: [NodeSpec(mac: MACAddress("52:54:00:09:09:09")!)], staging: "gone")
        #expect(throws: WireError.self) { try s.importNodes(late) }
        let first = try s.importNodes(NodeImportRequest(nodes: [NodeSpec(mac: MACAddress("52:54:00:09:09:0a")!)], more: true))
        let expired = NodeImportRequest(nodes: [], staging: first.staging)
        #expect(throws: WireError.self) { try s.importNodes(expired, now: Date().addingTimeInterval(StagedImport.lifetime + 1)) }
        #expect(s.nodes.count == 20_000)
    }
}
