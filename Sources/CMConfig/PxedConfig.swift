import CMTypes
import Foundation

/// /etc/clustermaker/pxed.toml — pxed.toml(5).
public struct PxedConfig: Sendable, Equatable {
    /// Full DHCP hands out addresses; proxy answers PXE clients with boot information only
    /// (another DHCP server owns the addresses); off answers no DHCP at all (TFTP and HTTP
    /// still serve).
    public enum Mode: String, Sendable, Equatable, CaseIterable {
        case dhcp, proxy, off
    }

    public struct Daemon: Sendable, Equatable {
        public var mode: Mode = .dhcp
        /// The boot network's interface: DHCP is received and sent only there.
        public var interface = ""
        /// This master's address on `interface`: DHCP server identifier, TFTP and HTTP source.
        public var serverAddress = IPv4Address(rawValue: 0)
        /// The address nodes fetch boot files from (next-server, URLs): the virtual IP when
        /// masters share one; default `serverAddress`.
        public var bootAddress: IPv4Address?
        /// Where booting nodes are, for recording boot script fetches in proxy mode and with
        /// DHCP off; nil: the network of `serverAddress`'s interface (full DHCP: its network).
        public var bootNetwork: IPv4Network?
        public var httpPort = 8067
        public var http = HTTPLimits()
        /// 0: no TFTP server.
        public var tftpPort = 69
        public var tftpMaxBlockSize = 1468
        public var tftpMaxWindowSize = 64
        public var tftpRetries = 5
        /// Concurrent transfers in all, and to one client address.
        public var tftpMaxTransfers = 512
        public var tftpMaxPerClient = 8
        /// TFTP root (boot loaders); nil: STATE_DIR/boot.
        public var bootDirectory: String?
        /// One directory per image; nil: STATE_DIR/images.
        public var imagesDirectory: String?
        /// Names of discovered nodes: one %d (optionally %0Nd), e.g. "node%03d".
        public var namePattern = "node%03d"
        /// Loaded over TFTP by a PXE ROM that is not iPXE yet, to chainload iPXE.
        public var biosBootfile = "undionly.kpxe"
        public var uefiBootfile = "ipxe.efi"
        /// Answer DHCP only while cm-vipd says this master is active.
        public var followVipd = false
        /// The group a discovered node joins.
        public var defaultGroup = "default"
        /// DISCOVERs a second from clients that are not nodes; 0: no limit.
        public var discoverRateLimit = 100
        /// The private key that reboots nodes over SSH (nil: CONFIG_DIR/power_ed25519,
        /// which `cmctl image build` makes and lets into every image for the reboot only).
        public var powerKey: String?
        /// How long a reboot over SSH may take, connecting included.
        public var rebootTimeout: Duration = .seconds(15)

        public var advertisedAddress: IPv4Address { bootAddress ?? serverAddress }
    }

    /// What one HTTP boot client may hold: without these a client that pipelines requests and
    /// never reads, or sends its head a byte at a time, keeps descriptors and connections
    /// until the daemon runs out of them (issue 23).
    public struct HTTPLimits: Sendable, Equatable {
        /// Open connections, all clients together.
        public var maxConnections = 512
        /// Open connections from one IPv4 address.
        public var maxConnectionsPerClient = 32
        /// From accept, or from the first byte after an idle keep-alive pause, until the whole
        /// request (head and any body) is in.
        public var headerTimeout: Duration = .seconds(10)
        /// Between one response and the first byte of the next request.
        public var idleTimeout: Duration = .seconds(30)
        /// A response that makes no progress this long (the client stopped reading).
        public var sendTimeout: Duration = .seconds(60)
        public init() {}
    }

    public struct DHCP: Sendable, Equatable {
        public var network = IPv4Network("10.77.0.0/24")!
        public var rangeStart = IPv4Address(rawValue: 0)
        public var rangeEnd = IPv4Address(rawValue: 0)
        public var routers: [IPv4Address] = []
        public var dnsServers: [IPv4Address] = []
        public var domain: String?
        public var leaseTime: Duration = .seconds(3600)
    }

    /// How to reach the nodes' BMCs (each node's address is its `bmc` in the inventory):
    /// reboots over IPMI with ipmitool when SSH cannot (or is not asked to) do it.
    public struct IPMI: Sendable, Equatable {
        /// ipmitool's -I: "lanplus" (IPMI v2.0, the default) or "lan" (v1.5).
        public var interface = "lanplus"
        public var port = 623
        public var user = ""
        /// A file holding the password (ipmitool -f), readable by group clustermaker.
        public var passwordFile = ""
        /// ipmitool's -C (lanplus); nil: ipmitool asks the BMC. 3 (SHA1/AES) is what nearly
        /// every BMC offers; 17 (SHA256/AES) where it is offered.
        public var cipherSuite: Int?
        public init() {}
    }

    /// Nodes sharing settings: image and kernel command line.
    public struct Group: Sendable, Equatable {
        public var name: String
        public var image: String
        public var kernelArgs: String
        public init(name: String, image: String, kernelArgs: String) {
            self.name = name
            self.image = image
            self.kernelArgs = kernelArgs
        }
    }

    public var pxed = Daemon()
    public var dhcp: DHCP?
    public var ipmi: IPMI?
    public var groups: [Group] = []

    public init() {}

    public static let fileName = "pxed.toml"

    public static func load(configDir: String) throws(ConfigErrors) -> PxedConfig {
        try parse(ConfigSource.read((configDir as NSString).appendingPathComponent(fileName)))
    }

    public func group(_ name: String) -> Group? { groups.first { $0.name == name } }

    public static func parse(_ source: ConfigSource) throws(ConfigErrors) -> PxedConfig {
        let doc = try ConfigDocument(source)
        let root = doc.rootReader
        var config = PxedConfig()

        let p = root.table("pxed")
        if let text = p.string("mode") {
            if let m = Mode(rawValue: text) { config.pxed.mode = m } else {
                p.error("mode", "\"\(text)\" is not a mode (dhcp, proxy, off)")
            }
        }
        if let i = p.string("interface", required: true) {
            if VipdConfig.isInterfaceName(i) { config.pxed.interface = i } else {
                p.error("interface", "\"\(i)\" is not an interface name (1-15 characters, no \"/\" or spaces)")
            }
        }
        config.pxed.serverAddress = p.ipv4("server_address", required: true) ?? IPv4Address(rawValue: 0)
        config.pxed.bootAddress = p.ipv4("boot_address")
        config.pxed.bootNetwork = p.ipv4Network("boot_network")
        config.pxed.httpPort = p.int("http_port", range: 1...65535, default: 8067)
        config.pxed.http.maxConnections = p.int("http_max_connections", range: 1...65536, default: 512)
        config.pxed.http.maxConnectionsPerClient = p.int("http_max_connections_per_client", range: 1...65536, default: 32)
        config.pxed.http.headerTimeout = p.duration("http_header_timeout", range: .milliseconds(100) ... .seconds(3600), default: .seconds(10))
        config.pxed.http.idleTimeout = p.duration("http_idle_timeout", range: .milliseconds(100) ... .seconds(3600), default: .seconds(30))
        config.pxed.http.sendTimeout = p.duration("http_send_timeout", range: .milliseconds(100) ... .seconds(3600), default: .seconds(60))
        config.pxed.tftpPort = p.int("tftp_port", range: 0...65535, default: 69)
        config.pxed.tftpMaxBlockSize = p.int("tftp_max_block_size", range: 512...65464, default: 1468)
        config.pxed.tftpMaxWindowSize = p.int("tftp_max_window_size", range: 1...64, default: 64)
        config.pxed.tftpRetries = p.int("tftp_retries", range: 1...20, default: 5)
        config.pxed.tftpMaxTransfers = p.int("tftp_max_transfers", range: 1...65536, default: 512)
        config.pxed.tftpMaxPerClient = p.int("tftp_max_per_client", range: 1...65536, default: 8)
        for (key, keyPath) in [("boot_dir", \Daemon.bootDirectory), ("images_dir", \Daemon.imagesDirectory), ("power_key", \Daemon.powerKey)] {
            if let d = p.string(key) {
                if d.hasPrefix("/") { config.pxed[keyPath: keyPath] = d } else { p.error(key, "\"\(d)\" must be an absolute path") }
            }
        }
        if let pattern = p.string("name_pattern") {
            if NamePattern(pattern) != nil { config.pxed.namePattern = pattern } else {
                p.error("name_pattern", "\"\(pattern)\" needs exactly one %d or %0Nd (N 1-9) and otherwise letters, digits and \"-\", e.g. \"node%03d\"")
            }
        }
        for key in ["bios_bootfile", "uefi_bootfile"] {
            guard let f = p.string(key) else { continue }
            if (try? TFTPPath.components(of: f)) == nil { p.error(key, "\"\(f)\" must be a relative path under boot_dir without \"..\"") }
            if key == "bios_bootfile" { config.pxed.biosBootfile = f } else { config.pxed.uefiBootfile = f }
        }
        config.pxed.followVipd = p.bool("follow_vipd", default: false)
        config.pxed.defaultGroup = p.string("default_group", default: "default")
        config.pxed.discoverRateLimit = p.int("discover_rate_limit", range: 0...100_000, default: 100)
        config.pxed.rebootTimeout = p.duration("reboot_timeout", range: .seconds(1) ... .seconds(300), default: .seconds(15))
        p.finish()

        let hasDHCP = root.has("dhcp")
        let d = root.table("dhcp")
        if !hasDHCP, config.pxed.mode == .dhcp {
            p.tableError("mode \"dhcp\" (the default) hands out addresses and needs a [dhcp] table with network and range; use mode = \"proxy\" beside another DHCP server")
        } else if hasDHCP {
            var dhcp = DHCP()
            if let n = d.ipv4Network("network", required: true) { dhcp.network = n }
            if let texts = d.stringArray("range") {
                let parsed = texts.compactMap(IPv4Address.init)
                if texts.count != 2 || parsed.count != 2 {
                    d.error("range", "expected two IPv4 addresses, the first and the last to hand out (e.g. [\"10.77.0.100\", \"10.77.0.199\"])")
                } else if parsed[0] > parsed[1] {
                    d.error("range", "\(parsed[0]) comes after \(parsed[1])")
                } else if !dhcp.network.contains(parsed[0]) || !dhcp.network.contains(parsed[1]) {
                    d.error("range", "\(parsed[0])-\(parsed[1]) is not inside network \(dhcp.network)")
                } else {
                    dhcp.rangeStart = parsed[0]
                    dhcp.rangeEnd = parsed[1]
                }
            } else if !d.has("range") {
                d.tableError("missing required key \"range\"")
            }
            for (key, keyPath) in [("routers", \DHCP.routers), ("dns_servers", \DHCP.dnsServers)] {
                for text in d.stringArray(key) ?? [] {
                    if let a = IPv4Address(text) { dhcp[keyPath: keyPath].append(a) } else { d.error(key, "\"\(text)\" is not an IPv4 address") }
                }
            }
            dhcp.domain = d.string("domain")
            dhcp.leaseTime = d.duration("lease_time", range: .seconds(60) ... .seconds(365 * 86400), default: .seconds(3600))
            if config.pxed.mode == .dhcp, config.pxed.serverAddress.rawValue != 0, !dhcp.network.contains(config.pxed.serverAddress) {
                p.error("server_address", "\(config.pxed.serverAddress) is not inside [dhcp] network \(dhcp.network)")
            }
            config.dhcp = dhcp
        }
        d.finish()

        if root.has("ipmi") {
            let t = root.table("ipmi")
            var ipmi = IPMI()
            if let i = t.string("interface") {
                if ["lanplus", "lan"].contains(i) { ipmi.interface = i } else { t.error("interface", "\"\(i)\" is not an ipmitool interface (lanplus, lan)") }
            }
            ipmi.port = t.int("port", range: 1...65535, default: 623)
            ipmi.cipherSuite = t.int("cipher_suite", range: 0...17)
            ipmi.user = t.string("user", required: true) ?? ""
            if let f = t.string("password_file", required: true) {
                if f.hasPrefix("/") { ipmi.passwordFile = f } else { t.error("password_file", "\"\(f)\" must be an absolute path") }
            }
            t.finish()
            config.ipmi = ipmi
        }

        var names = Set<String>()
        for t in root.tables("group") {
            let name = t.string("name", required: true)
            if let name {
                t.label = "group \"\(name)\""
                if !Self.isName(name) { t.error("name", "\"\(name)\" is not a valid group name (1-32 of A-Z, a-z, 0-9, \"_\", \"-\")") }
                if !names.insert(name).inserted { t.error("name", "duplicate group name \"\(name)\"") }
            }
            let image = t.string("image", default: "default")
            if ImageRef(image) == nil { t.error("image", "\"\(image)\" is not an image: NAME or NAME@REVISION, a name being \(ImageRef.nameRule)") }
            let args = t.string("kernel_args", default: "")
            if args.contains("\n") { t.error("kernel_args", "must be one line") }
            if let name { config.groups.append(Group(name: name, image: image, kernelArgs: args)) }
            t.finish()
        }
        if !names.contains(config.pxed.defaultGroup) {
            if root.has("group") || config.pxed.defaultGroup != "default" {
                p.error("default_group", "no [[group]] is named \"\(config.pxed.defaultGroup)\"")
            } else {
                config.groups.append(Group(name: "default", image: "default", kernelArgs: ""))
            }
        }
        root.finish()
        try doc.check()
        return config
    }

    public static func isName(_ s: String) -> Bool {
        (1...32).contains(s.utf8.count) && s.utf8.allSatisfy { TOMLPositions.isBare($0) }
    }
}

/// "node%03d" → node001, node002, …
public struct NamePattern: Sendable, Equatable {
    public var prefix: String
    public var width: Int
    public var suffix: String

    public init?(_ text: String) {
        guard let percent = text.firstIndex(of: "%") else { return nil }
        prefix = String(text[..<percent])
        var rest = text[text.index(after: percent)...]
        width = 0
        if rest.first == "0" {
            rest = rest.dropFirst()
            guard let digit = rest.first, let w = Int(String(digit)), w >= 1 else { return nil }
            width = w
            rest = rest.dropFirst()
        }
        guard rest.first == "d" else { return nil }
        suffix = String(rest.dropFirst())
        let allowed = { (c: UInt8) in (c >= 0x30 && c <= 0x39) || (c | 0x20 >= 0x61 && c | 0x20 <= 0x7a) || c == 0x2d }
        guard (prefix + suffix).utf8.allSatisfy(allowed) else { return nil }
    }

    public func name(_ n: Int) -> String {
        let digits = String(n)
        return prefix + String(repeating: "0", count: max(0, width - digits.count)) + digits + suffix
    }

    /// The number in `name` if it fits the pattern.
    public func number(in name: String) -> Int? {
        guard name.hasPrefix(prefix), name.hasSuffix(suffix), name.count > prefix.count + suffix.count else { return nil }
        return Int(name.dropFirst(prefix.count).dropLast(suffix.count))
    }
}
