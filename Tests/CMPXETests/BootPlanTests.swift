import CMConfig
@testable import CMPXE
import CMTypes
import CMWire
import PXEProtocols
import Testing

let pxedText = """
    [pxed]
    interface = "br0"
    server_address = "10.77.0.1"
    boot_address = "10.77.0.100"
    [dhcp]
    network = "10.77.0.0/24"
    range = ["10.77.0.110", "10.77.0.112"]
    [[group]]
    name = "default"
    image = "debian"
    kernel_args = "console=ttyS0"
    [[group]]
    name = "gpu"
    image = "cuda"
    kernel_args = "quiet"
    """

func pxedConfig(_ extra: String = "", mode: String = "dhcp") throws -> PxedConfig {
    try PxedConfig.parse(ConfigSource(path: "pxed.toml", text: pxedText.replacingOccurrences(of: "[pxed]\n", with: "[pxed]\nmode = \"\(mode)\"\n\(extra)")))
}

/// A client message as a PXE ROM or iPXE sends it.
func pxeMessage(_ type: DHCPMessageType, mac: String, arch: UInt16? = 0, ipxe: Bool = false, pxe: Bool = true, xid: UInt32 = 7) -> DHCPMessage {
    var m = DHCPMessage(op: .request, xid: xid, chaddr: MACAddress(mac)!.bytes)
    m.messageType = type
    if pxe { m.setOption(DHCPMessage.Code.vendorClass, Array("PXEClient:Arch:00000:UNDI:002001".utf8)) }
    if let arch { m.setOption(DHCPMessage.Code.clientArchitecture, [UInt8(arch >> 8), UInt8(arch & 0xff)]) }
    if ipxe { m.setOption(DHCPMessage.Code.userClass, Array("iPXE".utf8)) }
    return m
}

@Suite struct BootPlanTests {
    @Test func bootFileByFirmware() throws {
        let c = try pxedConfig()
        #expect(BootPlan.bootFile(for: pxeMessage(.discover, mac: "52:54:00:00:00:01", arch: 0), config: c) == "undionly.kpxe")
        #expect(BootPlan.bootFile(for: pxeMessage(.discover, mac: "52:54:00:00:00:01", arch: 7), config: c) == "ipxe.efi")
        #expect(BootPlan.bootFile(for: pxeMessage(.discover, mac: "52:54:00:00:00:01", arch: nil), config: c) == "undionly.kpxe")
        // iPXE already: its HTTP script at the boot address, never iPXE again (no loop).
        #expect(BootPlan.bootFile(for: pxeMessage(.discover, mac: "52:54:00:00:00:01", arch: 7, ipxe: true), config: c)
                == "http://10.77.0.100:8067/boot/52-54-00-00-00-01.ipxe")
        #expect(BootPlan.architecture([0]) == "bios" && BootPlan.architecture([9]) == "uefi-x86_64" && BootPlan.architecture([11]) == "uefi-arm64")
        #expect(BootPlan.architecture([]) == nil && BootPlan.architecture([42]) == "arch-42")
    }

    @Test func proxyOfferCarriesBootInformationOnly() throws {
        let c = try pxedConfig(mode: "proxy")
        var m = pxeMessage(.discover, mac: "52:54:00:00:00:02", arch: 0)
        m.setOption(DHCPMessage.Code.clientMachineID, [0] + Array(repeating: 0xab, count: 16))
        let r = BootPlan.proxyReply(.offer, to: m, config: c)
        #expect(r.messageType == .offer && r.yiaddr.rawValue == 0 && r.xid == 7 && r.chaddr.prefix(6) == MACAddress("52:54:00:00:00:02")!.bytes[...])
        #expect(r.serverIdentifier == IPv4Address("10.77.0.1") && r.siaddr == IPv4Address("10.77.0.100") && r.file == "undionly.kpxe")
        #expect(r.vendorClass == "PXEClient" && r.option(DHCPMessage.Code.vendorSpecific) == [6, 1, 8, 255])
        #expect(r.option(DHCPMessage.Code.clientMachineID)?.count == 17)
        #expect(r.option(DHCPMessage.Code.leaseTime) == nil && r.option(DHCPMessage.Code.subnetMask) == nil)
        // Round trip through the codec, as the client parses it.
        let parsed = try DHCPMessage(parsing: r.serialize())
        #expect(parsed == r)
    }

    @Test func imagesAndKernelArguments() throws {
        let c = try pxedConfig()
        var n = NodeInfo(name: "node001", mac: MACAddress("52:54:00:00:00:01")!, group: "gpu", kernelArgs: "cm.role=db")
        #expect(BootPlan.image(for: n, config: c) == "cuda" && BootPlan.kernelArgs(for: n, config: c) == "quiet cm.role=db")
        n.image = "rescue-img"
        #expect(BootPlan.image(for: n, config: c) == "rescue-img")
        n.nextImage = "memtest"
        #expect(BootPlan.image(for: n, config: c) == "memtest")
    }

    @Test func scriptFromTheDefaultTemplate() throws {
        let c = try pxedConfig()
        let n = NodeInfo(name: "node001", mac: MACAddress("52:54:00:00:00:01")!, group: "default")
        let s = BootPlan.script(node: n, image: "debian", template: nil, files: ["vmlinuz", "initrd.img"], config: c)
        #expect(s == """
            #!ipxe
            echo ClusterMaker: node001 (52:54:00:00:00:01) boots image debian
            kernel http://10.77.0.100:8067/boot/52-54-00-00-00-01/debian/vmlinuz initrd=initrd.img console=ttyS0
            initrd http://10.77.0.100:8067/boot/52-54-00-00-00-01/debian/initrd.img
            boot

            """)
        let noInitrd = BootPlan.script(node: n, image: "debian", template: nil, files: ["vmlinuz"], config: c)
        #expect(!noInitrd.contains("initrd") && noInitrd.contains("/debian/vmlinuz console=ttyS0\n"))
        #expect(BootPlan.finalStage(files: ["vmlinuz", "initrd.img"]) == "initrd.img" && BootPlan.finalStage(files: ["vmlinuz"]) == "vmlinuz")
    }

    @Test func scriptFromAnImageTemplateAndForAMissingImage() throws {
        let c = try pxedConfig()
        let n = NodeInfo(name: "node002", mac: MACAddress("52:54:00:00:00:02")!, group: "default")
        let t = "#!ipxe\nkernel {{base}}/vmlinuz {{kernel_args}} cm.node={{node}} cm.server={{server}}\nboot\n"
        #expect(BootPlan.script(node: n, image: "debian", template: t, files: ["vmlinuz"], config: c)
                == "#!ipxe\nkernel http://10.77.0.100:8067/boot/52-54-00-00-00-02/debian/vmlinuz console=ttyS0 cm.node=node002 cm.server=http://10.77.0.100:8067\nboot\n")
        let missing = BootPlan.script(node: n, image: "nope", template: nil, files: [], config: c)
        #expect(missing.contains("image \"nope\" for node002 has no vmlinuz") && missing.contains("chain --autofree http://10.77.0.100:8067/boot/52-54-00-00-00-02.ipxe"))
    }

    @Test func servableNamesAndURLForms() {
        #expect(BootPlan.isServableName("vmlinuz") && !BootPlan.isServableName(".hidden") && !BootPlan.isServableName("a/b") && !BootPlan.isServableName(""))
        #expect(BootPlan.mac(urlForm: "52-54-00-00-00-0a") == MACAddress("52:54:00:00:00:0a") && BootPlan.mac(urlForm: "zz") == nil)
    }
}

@Suite struct HTTPRangeTests {
    @Test(arguments: [
        ("bytes=0-99", 1000, "0..<100"), ("bytes=100-", 1000, "100..<1000"), ("bytes=-10", 1000, "990..<1000"),
        ("bytes=990-5000", 1000, "990..<1000"), ("bytes=-5000", 1000, "0..<1000"),
        ("bytes=1000-", 1000, "unsatisfiable"), ("bytes=-0", 1000, "unsatisfiable"), ("bytes=0-0", 0, "unsatisfiable"),
        ("bytes=5-1", 1000, "whole"), ("bytes=0-1,5-6", 1000, "whole"), ("items=0-1", 1000, "whole"), ("bytes=a-b", 1000, "whole"),
    ])
    func ranges(spec: String, size: Int, expected: String) {
        let got: String
        switch HTTPBootHandler.byteRange(spec, size: size) {
        case .none: got = "whole"
        case .some(.none): got = "unsatisfiable"
        case .some(.some(let r)): got = "\(r)"
        }
        #expect(got == expected)
    }
}

@Suite struct SharedRootBootTests {
    @Test func aRevisionWithARootBootsFromItsExportOnTheBootAddress() throws {
        let config = try pxedConfig()
        let node = NodeInfo(name: "node007", mac: MACAddress("52:54:00:00:00:07")!, address: IPv4Address("10.77.0.107"), group: "default")
        let text = BootPlan.script(node: node, image: "debian@3", template: nil, files: ["vmlinuz", "initrd.img", "root"], config: config)
        let kernel = try #require(text.split(separator: "\n").first { $0.hasPrefix("kernel ") })
        #expect(kernel.contains("/boot/52-54-00-00-00-07/debian@3/vmlinuz initrd=initrd.img boot=clustermaker"))
        #expect(kernel.contains(" cm.root=10.77.0.100:/images/debian/3 cm.shared=10.77.0.100:/shared "))
        #expect(kernel.contains(" ip=10.77.0.107:::255.255.255.0:node007:eth0:off "))
        #expect(kernel.contains(" systemd.hostname=node007 systemd.machine_id=\(BootPlan.machineID(node.mac)) "))
        #expect(kernel.hasSuffix(" console=ttyS0"))
        // A kernel-only image (no root) gets none of it.
        let plain = BootPlan.script(node: node, image: "debian", template: nil, files: ["vmlinuz", "initrd.img"], config: config)
        #expect(!plain.contains("cm.root"))
    }

    @Test func aNodeWithoutAFixedAddressAsksDHCPAgain() throws {
        let node = NodeInfo(name: "node008", mac: MACAddress("52:54:00:00:00:08")!, group: "default")
        #expect(BootPlan.rootArgs(node: node, image: ImageRef(name: "debian", revision: 1), config: try pxedConfig())?.contains(" ip=dhcp ") == true)
    }

    @Test func machineIdsAreStablePerNodeAndDifferBetweenNodes() {
        let a = BootPlan.machineID(MACAddress("52:54:00:00:00:01")!), b = BootPlan.machineID(MACAddress("52:54:00:00:00:02")!)
        #expect(a == BootPlan.machineID(MACAddress("52:54:00:00:00:01")!))
        #expect(a != b)
        #expect(a.count == 32 && a.allSatisfy(\.isHexDigit) && a != String(repeating: "0", count: 32))
    }
}
