import CMConfig
import CMTypes
import CMWire
import Foundation
import PXEProtocols

/// What a booting node gets: the boot file in DHCP, its iPXE script. Pure: configuration,
/// node and request in, text out.
public enum BootPlan {
    /// Option 93 (IANA processor architecture types) as a word admins read.
    public static func architecture(_ codes: [UInt16]) -> String? {
        guard let c = codes.first else { return nil }
        switch c {
        case 0: return "bios"
        case 6: return "uefi-ia32"
        case 7, 9: return "uefi-x86_64"
        case 10: return "uefi-arm32"
        case 11: return "uefi-arm64"
        case 16: return "uefi-http-x86_64"
        default: return "arch-\(c)"
        }
    }

    /// "52-54-00-77-00-01": a MAC address as it appears in URLs.
    public static func urlForm(_ mac: MACAddress) -> String { mac.description.replacingOccurrences(of: ":", with: "-") }

    public static func mac(urlForm text: some StringProtocol) -> MACAddress? { MACAddress(text.replacingOccurrences(of: "-", with: ":")) }

    public static func baseURL(_ config: PxedConfig) -> String { "http://\(config.pxed.advertisedAddress):\(config.pxed.httpPort)" }

    /// The boot file for a PXE client: iPXE gets its HTTP script (no chainload loop); a plain
    /// PXE ROM gets iPXE over TFTP for its firmware.
    public static func bootFile(for m: DHCPMessage, config: PxedConfig) -> String {
        if m.isIPXE, let mac = m.clientMAC { return "\(baseURL(config))/boot/\(urlForm(mac)).ipxe" }
        let arch = architecture(m.clientArchitectures) ?? "bios"
        return arch == "bios" ? config.pxed.biosBootfile : config.pxed.uefiBootfile
    }

    /// Adds the boot information to an OFFER or ACK for a PXE or iPXE client: next-server,
    /// file, option 60 "PXEClient" and the PXE vendor options (discovery control: boot from
    /// the file named here, no boot server discovery).
    public static func addBootInformation(to r: inout DHCPMessage, request m: DHCPMessage, config: PxedConfig) {
        let file = bootFile(for: m, config: config)
        r.siaddr = config.pxed.advertisedAddress
        if file.utf8.count < 128 { r.fileBytes = Array(file.utf8) } else { r.setOption(DHCPMessage.Code.bootfileName, Array(file.utf8)) }
        if m.isPXEClient {
            r.setOption(DHCPMessage.Code.vendorClass, Array("PXEClient".utf8))
            r.setOption(DHCPMessage.Code.vendorSpecific, [6, 1, 8, 255])
            if let uuid = m.option(DHCPMessage.Code.clientMachineID) { r.setOption(DHCPMessage.Code.clientMachineID, uuid) }
        }
    }

    /// A proxyDHCP answer (PXE spec 2.1, RFC 4578): boot information, no address. `type` is
    /// OFFER on port 67, ACK on port 4011.
    public static func proxyReply(_ type: DHCPMessageType, to m: DHCPMessage, config: PxedConfig) -> DHCPMessage {
        var r = DHCPMessage(op: .reply, xid: m.xid, chaddr: m.chaddr)
        r.htype = m.htype
        r.hlen = m.hlen
        r.flags = m.flags
        r.giaddr = m.giaddr
        r.ciaddr = type == .ack ? m.ciaddr : IPv4Address(rawValue: 0)
        r.messageType = type
        r.setOption(DHCPMessage.Code.serverIdentifier, DHCPMessage.addressBytes(config.pxed.serverAddress))
        addBootInformation(to: &r, request: m, config: config)
        // The PXE spec requires option 60 in a proxy reply even to a client that left it out.
        if r.option(DHCPMessage.Code.vendorClass) == nil { r.setOption(DHCPMessage.Code.vendorClass, Array("PXEClient".utf8)) }
        return r
    }

    /// The image a node boots now: its one-shot next image, its own, its group's.
    public static func image(for node: NodeInfo, config: PxedConfig) -> String {
        node.nextImage ?? node.image ?? config.group(node.group)?.image ?? "default"
    }

    public static func kernelArgs(for node: NodeInfo, config: PxedConfig) -> String {
        [config.group(node.group)?.kernelArgs, node.kernelArgs].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: " ")
    }

    public static let defaultTemplate = """
        #!ipxe
        echo ClusterMaker: {{node}} ({{mac}}) boots image {{image}}
        kernel {{base}}/vmlinuz initrd=initrd.img {{root_args}} {{kernel_args}}
        initrd {{base}}/initrd.img
        boot

        """

    /// The node's iPXE script from the image's template (or the default one). `files` are
    /// the image directory's files; without an initrd.img the initrd lines go.
    public static func script(node: NodeInfo, image: String, template: String?, files: Set<String>, config: PxedConfig) -> String {
        let mac = urlForm(node.mac)
        guard files.contains("vmlinuz") else {
            // No such image (or no kernel in it): say so on the console and ask again later.
            return """
                #!ipxe
                echo ClusterMaker: image "\(image)" for \(node.name) has no vmlinuz on cm-pxed; retrying in 30 s
                sleep 30
                chain --autofree \(baseURL(config))/boot/\(mac).ipxe

                """
        }
        var text = template ?? defaultTemplate
        if template == nil, !files.contains("initrd.img") {
            text = text.split(separator: "\n", omittingEmptySubsequences: false)
                .filter { !$0.hasPrefix("initrd ") }.joined(separator: "\n").replacingOccurrences(of: " initrd=initrd.img", with: "")
        }
        let root = files.contains("root") ? ImageRef(image).flatMap { rootArgs(node: node, image: $0, config: config) } ?? "" : ""
        let values = ["base": "\(baseURL(config))/boot/\(mac)/\(image)", "node": node.name, "mac": node.mac.description,
                      "image": image, "kernel_args": kernelArgs(for: node, config: config), "server": baseURL(config), "root_args": root]
        for (k, v) in values { text = text.replacingOccurrences(of: "{{\(k)}}", with: v) }
        // An empty placeholder leaves two spaces (or one at the end) on the kernel line.
        return text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            guard line.hasPrefix("kernel ") else { return String(line) }
            return line.split(separator: " ").joined(separator: " ")
        }.joined(separator: "\n")
    }

    /// The kernel arguments of a node booting a revision's shared root (the image's
    /// initramfs script reads the cm.* ones): the revision's export and /shared, both from the
    /// boot address (the masters' virtual IP), the node's network, hostname and machine-id.
    public static func rootArgs(node: NodeInfo, image: ImageRef, config: PxedConfig) -> String? {
        guard let rev = image.revision else { return nil }
        let nfs = config.pxed.advertisedAddress
        return ["boot=clustermaker", "cm.root=\(nfs):/images/\(image.name)/\(rev)", "cm.shared=\(nfs):/shared",
                "cm.node=\(baseURL(config))/node/\(urlForm(node.mac))",
                "ip=\(ipArgument(node: node, config: config))", "net.ifnames=0",
                "systemd.hostname=\(node.name)", "systemd.machine_id=\(machineID(node.mac))"].joined(separator: " ")
    }

    /// The kernel's ip= (Documentation/admin-guide/nfs/nfsroot.rst): the node's fixed address
    /// with the DHCP section's netmask and router when it has one; else DHCP again.
    static func ipArgument(node: NodeInfo, config: PxedConfig) -> String {
        guard let address = node.address, let dhcp = config.dhcp, dhcp.network.contains(address) else { return "dhcp" }
        let gateway = dhcp.routers.first.map(\.description) ?? ""
        return "\(address)::\(gateway):\(IPv4Address(rawValue: dhcp.network.mask)):\(node.name):eth0:off"
    }

    /// A node's machine-id (machine-id(5)): 128 bits derived from its MAC address, the same at
    /// every boot and on every master, different for every node. FNV-1a over two seeds.
    public static func machineID(_ mac: MACAddress) -> String {
        func fnv(_ seed: UInt64) -> UInt64 {
            var h: UInt64 = 0xcbf2_9ce4_8422_2325 ^ seed
            for b in Array("clustermaker machine-id \(mac)".utf8) {
                h ^= UInt64(b)
                h &*= 0x0000_0100_0000_01b3
            }
            // A final mix so that MACs one bit apart differ everywhere.
            h ^= h >> 33
            h &*= 0xff51_afd7_ed55_8ccd
            h ^= h >> 33
            return h
        }
        return String(format: "%016llx%016llx", fnv(1), fnv(2))
    }

    /// The file whose complete download means the node booted: the initrd, else the kernel.
    public static func finalStage(files: Set<String>) -> String { files.contains("initrd.img") ? "initrd.img" : "vmlinuz" }

    /// A file name an image directory may serve: one path component, not hidden.
    public static func isServableName(_ s: some StringProtocol) -> Bool {
        !s.isEmpty && !s.hasPrefix(".") && !s.contains("/") && !s.utf8.contains { $0 < 0x20 || $0 == 0x7f || $0 == UInt8(ascii: "\\") }
    }
}
