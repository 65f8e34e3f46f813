import CMConfig
import CMTypes
import Testing

func pxedErrors(_ text: String) -> String {
    do {
        _ = try PxedConfig.parse(ConfigSource(path: "pxed.toml", text: text))
        return "no error"
    } catch {
        return "\(error)"
    }
}

let minimalPxed = "[pxed]\ninterface = \"br0\"\nserver_address = \"10.77.0.1\"\n[dhcp]\nnetwork = \"10.77.0.0/24\"\nrange = [\"10.77.0.100\", \"10.77.0.199\"]\n"

@Suite struct PxedConfigTests {
    @Test func exampleLoadsWithTheDefaultsItsCommentsState() throws {
        let c = try PxedConfig.load(configDir: repoRoot + "/etc/clustermaker")
        #expect(c.pxed.mode == .dhcp && c.pxed.interface == "br0" && c.pxed.serverAddress == IPv4Address("10.77.0.1"))
        #expect(c.pxed.bootAddress == nil && c.pxed.advertisedAddress == IPv4Address("10.77.0.1"))
        #expect(c.pxed.httpPort == 8067 && c.pxed.tftpPort == 69 && c.pxed.tftpMaxBlockSize == 1468 && c.pxed.tftpMaxWindowSize == 64)
        #expect(c.pxed.tftpRetries == 5 && c.pxed.bootDirectory == nil && c.pxed.imagesDirectory == "/srv/clustermaker/images")
        #expect(c.pxed.tftpMaxTransfers == 512 && c.pxed.tftpMaxPerClient == 8)
        #expect(c.pxed.namePattern == "node%03d" && c.pxed.biosBootfile == "undionly.kpxe" && c.pxed.uefiBootfile == "ipxe.efi")
        #expect(!c.pxed.followVipd && c.pxed.defaultGroup == "default")
        #expect(c.pxed.http == PxedConfig.HTTPLimits())
        #expect(c.pxed.http.maxConnections == 512 && c.pxed.http.maxConnectionsPerClient == 32 && c.pxed.http.headerTimeout == .seconds(10))
        #expect(c.pxed.http.idleTimeout == .seconds(30) && c.pxed.http.sendTimeout == .seconds(60))
        let d = try #require(c.dhcp)
        #expect(d.rangeStart == IPv4Address("10.77.0.150") && d.rangeEnd == IPv4Address("10.77.0.199") && d.leaseTime == .seconds(3600))
        #expect(d.routers.isEmpty && d.dnsServers.isEmpty && d.domain == nil)
        #expect(c.groups == [PxedConfig.Group(name: "default", image: "default", kernelArgs: "console=ttyS0 panic=-1")])
    }

    @Test func minimalGetsADefaultGroup() throws {
        let c = try PxedConfig.parse(ConfigSource(path: "pxed.toml", text: minimalPxed))
        #expect(c.groups == [PxedConfig.Group(name: "default", image: "default", kernelArgs: "")])
    }

    @Test func proxyModeNeedsNoDHCPTable() throws {
        let c = try PxedConfig.parse(ConfigSource(path: "pxed.toml", text: "[pxed]\nmode = \"proxy\"\ninterface = \"eth0\"\nserver_address = \"192.168.1.5\"\n"))
        #expect(c.pxed.mode == .proxy && c.dhcp == nil)
    }

    @Test func httpLimits() throws {
        let text = minimalPxed.replacingOccurrences(of: "[dhcp]", with: """
            http_max_connections = 64
            http_max_connections_per_client = 4
            http_header_timeout = "500ms"
            http_idle_timeout = "2m"
            http_send_timeout = "1m30s"
            [dhcp]
            """)
        let h = try PxedConfig.parse(ConfigSource(path: "pxed.toml", text: text)).pxed.http
        #expect(h.maxConnections == 64 && h.maxConnectionsPerClient == 4 && h.headerTimeout == .milliseconds(500))
        #expect(h.idleTimeout == .seconds(120) && h.sendTimeout == .seconds(90))
    }

    // Apart from errorMessages: one literal array of them all is more than the type checker
    // finishes in reasonable time.
    @Test(arguments: [
        ("http_max_connections = 0", #"pxed.toml:4:24: pxed: http_max_connections: 0 out of range 1…65536"#),
        ("http_header_timeout = \"10\"",
         #"pxed.toml:4:23: pxed: http_header_timeout: "10" is not a duration (write NUMBER UNIT, units ms s m h d w, e.g. "500ms", "1m30s")"#),
        ("http_send_timeout = \"10ms\"", #"pxed.toml:4:21: pxed: http_send_timeout: 10ms out of range 100ms…1h"#),
    ])
    func httpLimitErrors(line: String, expected: String) {
        #expect(pxedErrors(minimalPxed.replacingOccurrences(of: "[dhcp]", with: line + "\n[dhcp]")) == expected)
    }

    @Test func namePatterns() throws {
        let p = try #require(NamePattern("node%03d"))
        #expect(p.name(7) == "node007" && p.name(1234) == "node1234" && p.number(in: "node042") == 42 && p.number(in: "web042") == nil)
        let q = try #require(NamePattern("rack1-n%d-x"))
        #expect(q.name(5) == "rack1-n5-x" && q.number(in: "rack1-n12-x") == 12)
        #expect(NamePattern("node") == nil && NamePattern("node%s") == nil && NamePattern("a b%d") == nil && NamePattern("n%00d") == nil)
    }

    @Test(arguments: [
        ("[pxed]\nserver_address = \"10.77.0.1\"\n[dhcp]\nnetwork = \"10.77.0.0/24\"\nrange = [\"10.77.0.100\", \"10.77.0.199\"]\n",
         #"pxed.toml:1:1: pxed: missing required key "interface""#),
        (minimalPxed.replacingOccurrences(of: "10.77.0.199", with: "10.78.0.199"),
         #"pxed.toml:6:9: dhcp: range: 10.77.0.100-10.78.0.199 is not inside network 10.77.0.0/24"#),
        (minimalPxed.replacingOccurrences(of: "\"10.77.0.100\", \"10.77.0.199\"", with: "\"10.77.0.199\", \"10.77.0.100\""),
         #"pxed.toml:6:9: dhcp: range: 10.77.0.199 comes after 10.77.0.100"#),
        (minimalPxed.replacingOccurrences(of: "server_address = \"10.77.0.1\"", with: "server_address = \"10.1.0.1\""),
         #"pxed.toml:3:18: pxed: server_address: 10.1.0.1 is not inside [dhcp] network 10.77.0.0/24"#),
        ("[pxed]\ninterface = \"br0\"\nserver_address = \"10.77.0.1\"\n", #"pxed.toml:1:1: pxed: mode "dhcp" (the default) hands out addresses and needs a [dhcp] table with network and range; use mode = "proxy" beside another DHCP server"#),
        (minimalPxed.replacingOccurrences(of: "[dhcp]", with: "mode = \"full\"\n[dhcp]"), #"pxed.toml:4:8: pxed: mode: "full" is not a mode (dhcp, proxy, off)"#),
        (minimalPxed.replacingOccurrences(of: "[dhcp]", with: "name_pattern = \"node\"\n[dhcp]"),
         #"pxed.toml:4:16: pxed: name_pattern: "node" needs exactly one %d or %0Nd (N 1-9) and otherwise letters, digits and "-", e.g. "node%03d""#),
        (minimalPxed.replacingOccurrences(of: "[dhcp]", with: "bios_bootfile = \"../undionly.kpxe\"\n[dhcp]"),
         #"pxed.toml:4:17: pxed: bios_bootfile: "../undionly.kpxe" must be a relative path under boot_dir without "..""#),
        (minimalPxed.replacingOccurrences(of: "[dhcp]", with: "images_dir = \"images\"\n[dhcp]"), #"pxed.toml:4:14: pxed: images_dir: "images" must be an absolute path"#),
        (minimalPxed.replacingOccurrences(of: "[dhcp]", with: "tftp_max_block_size = 100\n[dhcp]"),
         #"pxed.toml:4:23: pxed: tftp_max_block_size: 100 out of range 512…65464"#),
        (minimalPxed.replacingOccurrences(of: "[dhcp]", with: "tftp_max_per_client = 0\n[dhcp]"),
         #"pxed.toml:4:23: pxed: tftp_max_per_client: 0 out of range 1…65536"#),
        (minimalPxed + "lease_time = \"10s\"\n", #"pxed.toml:7:14: dhcp: lease_time: 10s out of range 1m…365d"#),
        (minimalPxed + "[[group]]\nname = \"a b\"\n", #"pxed.toml:1:1: pxed: default_group: no [[group]] is named "default"\#npxed.toml:8:8: group "a b": name: "a b" is not a valid group name (1-32 of A-Z, a-z, 0-9, "_", "-")"#),
        (minimalPxed + "[[group]]\nname = \"compute\"\n", #"pxed.toml:1:1: pxed: default_group: no [[group]] is named "default""#),
        (minimalPxed + "[[group]]\nname = \"default\"\nimage = \"x/y\"\n",
         #"pxed.toml:9:9: group "default": image: "x/y" is not an image: NAME or NAME@REVISION, a name being 1-32 of A-Z, a-z, 0-9, "_", "-", not starting with "-""#),
        (minimalPxed + "[[group]]\nname = \"default\"\n[[group]]\nname = \"default\"\n", #"pxed.toml:10:8: group "default": name: duplicate group name "default""#),
        (minimalPxed.replacingOccurrences(of: "[dhcp]", with: "http_prot = 80\n[dhcp]"), #"pxed.toml:4:1: pxed: http_prot: unknown key (did you mean "http_port"?)"#),
        (minimalPxed + "[ipmi]\nuser = \"admin\"\n", #"pxed.toml:7:1: ipmi: missing required key "password_file""#),
        (minimalPxed + "[ipmi]\nuser = \"admin\"\npassword_file = \"pw\"\ninterface = \"serial\"\n",
         #"pxed.toml:9:17: ipmi: password_file: "pw" must be an absolute path\#npxed.toml:10:13: ipmi: interface: "serial" is not an ipmitool interface (lanplus, lan)"#),
        (minimalPxed.replacingOccurrences(of: "[dhcp]", with: "reboot_timeout = \"0s\"\n[dhcp]"), #"pxed.toml:4:18: pxed: reboot_timeout: 0s out of range 1s…5m"#),
    ])
    func errorMessages(text: String, expected: String) {
        #expect(pxedErrors(text) == expected)
    }
}

@Suite struct IPMIConfigTests {
    @Test func theIPMITableAndThePowerKeys() throws {
        let c = try PxedConfig.parse(ConfigSource(path: "pxed.toml", text: minimalPxed.replacingOccurrences(of: "[dhcp]", with: "power_key = \"/k\"\nreboot_timeout = \"20s\"\n[dhcp]")
            + "[ipmi]\nuser = \"admin\"\npassword_file = \"/etc/clustermaker/ipmi-password\"\nport = 9623\n"))
        #expect(c.pxed.powerKey == "/k" && c.pxed.rebootTimeout == .seconds(20))
        #expect(c.ipmi?.user == "admin" && c.ipmi?.passwordFile == "/etc/clustermaker/ipmi-password" && c.ipmi?.port == 9623 && c.ipmi?.interface == "lanplus")
        #expect(try PxedConfig.parse(ConfigSource(path: "pxed.toml", text: minimalPxed)).ipmi == nil)
    }

    /// The example's commented [ipmi] table, uncommented, is valid and states the defaults.
    @Test func theExamplesIPMITable() throws {
        let text = try String(contentsOfFile: repoRoot + "/etc/clustermaker/pxed.toml", encoding: .utf8)
        let head = try #require(text.range(of: "#[ipmi]\n"))
        let table = text[head.lowerBound...].split(separator: "\n").map { $0.dropFirst() }.joined(separator: "\n")
        let c = try PxedConfig.parse(ConfigSource(path: "pxed.toml", text: String(text[..<head.lowerBound]) + table + "\n"))
        #expect(c.ipmi?.interface == "lanplus" && c.ipmi?.port == 623 && c.ipmi?.user == "ADMIN" && c.ipmi?.cipherSuite == 17)
    }
}

@Suite struct InventoryFileTests {
    @Test func theBMCColumn() throws {
        let csv = try InventoryFile.parseCSV("mac,bmc\n52:54:00:00:00:01,10.78.0.1\n", file: "nodes.csv")
        #expect(csv.first?.bmc == IPv4Address("10.78.0.1"))
        let toml = try InventoryFile.parseTOML(ConfigSource(path: "nodes.toml", text: "[[node]]\nmac = \"52:54:00:00:00:01\"\nbmc = \"10.78.0.1\"\n"))
        #expect(toml.first?.bmc == IPv4Address("10.78.0.1"))
        #expect(throws: ConfigErrors.self) { try InventoryFile.parseCSV("mac,bmc\n52:54:00:00:00:01,nope\n", file: "nodes.csv") }
    }

    @Test func csvWithHeaderInAnyOrder() throws {
        let text = "mac,name,address,group\n52:54:00:00:00:01,n1,10.77.0.11,default\n\n# comment\n52:54:00:00:00:02,,,\n"
        let e = try InventoryFile.parseCSV(text, file: "nodes.csv")
        #expect(e == [NodeSpec(name: "n1", mac: MACAddress("52:54:00:00:00:01")!, address: IPv4Address("10.77.0.11"), group: "default", image: nil, kernelArgs: nil),
                      NodeSpec(name: nil, mac: MACAddress("52:54:00:00:00:02")!, address: nil, group: nil, image: nil, kernelArgs: nil)])
    }

    @Test func csvErrorsNameFileAndLine() {
        let text = "name,mac,colour\nn1,52:54:00:00:00:01\nn2,zz,red\nn3,52:54:00:00:00:01,red\n"
        #expect(throws: ConfigErrors.self) { try InventoryFile.parseCSV(text, file: "nodes.csv") }
        do {
            _ = try InventoryFile.parseCSV(text, file: "nodes.csv")
        } catch {
            #expect("\(error)" == """
                nodes.csv:1:1: unknown column "colour" (columns: name, mac, address, group, image, kernel_args, bmc)
                nodes.csv:2:1: 2 cells, the header has 3
                nodes.csv:3:1: mac: "zz" is not a MAC address
                """)
        }
    }

    @Test func tomlRoundTripFormat() throws {
        let text = "[[node]]\nname = \"n1\"\nmac = \"52:54:00:00:00:01\"\naddress = \"10.77.0.11\"\ngroup = \"default\"\nkernel_args = \"quiet\"\n[[node]]\nmac = \"52:54:00:00:00:02\"\n"
        let e = try InventoryFile.parseTOML(ConfigSource(path: "nodes.toml", text: text))
        #expect(e.count == 2 && e[0].kernelArgs == "quiet" && e[1].name == nil)
        #expect(throws: ConfigErrors.self) { try InventoryFile.parseTOML(ConfigSource(path: "n.toml", text: "[[node]]\nname = \"x\"\n")) }
        #expect(throws: ConfigErrors.self) { try InventoryFile.parseTOML(ConfigSource(path: "n.toml", text: text + "[[node]]\nmac = \"52:54:00:00:00:01\"\n")) }
    }
}
