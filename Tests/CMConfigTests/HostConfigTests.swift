@testable import CMConfig
import CMTypes
import Testing

@Suite struct HostConfigTests {
    let m1 = HostConfig.Host(name: "master1", address: IPv4Address(10, 77, 0, 1))
    let m2 = HostConfig.Host(name: "master2", address: IPv4Address(10, 77, 0, 2))

    @Test func replicadGetsTheClonesAddressAndName() throws {
        let text = """
            # the volume
            [volume]
            address = "10.77.0.1"   # this master
            brick = "/data/brick"
            [nfs]
            clients = ["10.77.0.0/24"]
            """
        let out = HostConfig.rewrite(file: "replicad.toml", text: text, source: m1, target: m2)
        #expect(out.contains("address = \"10.77.0.2\"  # was \"10.77.0.1\" on master1 (cmctl master clone)"))
        #expect(out.contains("brick = \"/data/brick\"") && out.contains("# the volume"))
        #expect(out.contains("[state]\nmaster = \"master2\""))
        let c = try ReplicadConfig.parse(ConfigSource(path: "replicad.toml", text: out))
        #expect(c.volume.address == m2.address && c.state.master == "master2")

        let withState = HostConfig.rewrite(file: "replicad.toml", text: text + "\n[state]\nmaster = \"master1\"\ninterval = \"50ms\"\n", source: m1, target: m2)
        let c2 = try ReplicadConfig.parse(ConfigSource(path: "replicad.toml", text: withState))
        #expect(c2.state.master == "master2" && c2.state.interval == .milliseconds(50))
        let stateWithoutMaster = HostConfig.rewrite(file: "replicad.toml", text: text + "\n[state]\ninterval = \"50ms\"\n", source: m1, target: m2)
        #expect(try ReplicadConfig.parse(ConfigSource(path: "replicad.toml", text: stateWithoutMaster)).state.master == "master2")
    }

    @Test func vipdPriorityIsLowerAndUnicastPeersPointBack() throws {
        let text = """
            [[instance]]
            name = "VI_1"
            interface = "eth0"
            vrid = 51
            priority = 150
            addresses = ["10.77.0.100/24"]
            unicast_peers = ["10.77.0.2"]
            [[instance]]
            name = "VI_2"
            interface = "eth0"
            vrid = 52
            priority = 255
            addresses = ["10.77.0.101/24"]
            """
        let out = HostConfig.rewrite(file: "vipd.toml", text: text, source: m1, target: m2)
        let c = try VipdConfig.parse(ConfigSource(path: "vipd.toml", text: out))
        #expect(c.instances.map(\.priority) == [100, 204])
        #expect(c.instances[0].unicastPeers.map(\.description) == ["10.77.0.1"])
    }

    @Test func pxedServerAddressAndOtherFilesAsTheyAre() {
        let pxed = "[pxed]\nmode = \"dhcp\"\nserver_address = \"10.77.0.1\"\nboot_address = \"10.77.0.100\"\n"
        let out = HostConfig.rewrite(file: "pxed.toml", text: pxed, source: m1, target: m2)
        #expect(out.contains("server_address = \"10.77.0.2\"") && out.contains("boot_address = \"10.77.0.100\"\n"))
        let cluster = "[cluster]\nname = \"demo\"\n[[master]]\nname = \"master1\"\naddress = \"10.77.0.1\"\n"
        #expect(HostConfig.rewrite(file: "cluster.toml", text: cluster, source: m1, target: m2) == cluster)
        #expect(HostConfig.keyValue("a # = b") == nil)
        #expect(HostConfig.header("[[instance]]  # x") == "instance")
    }

    @Test func aReplicatedFileKeepsThisMastersOwnValues() throws {
        let active = """
            [[instance]]
            name = "VI_1"
            interface = "eth0"
            vrid = 51
            priority = 150
            addresses = ["10.77.0.100/24", "10.77.0.101/24"]
            unicast_peers = ["10.77.0.2"]
            """
        let mine = """
            [[instance]]
            name = "VI_1"
            interface = "eth0"
            vrid = 51
            priority = 100  # the backup
            addresses = ["10.77.0.100/24"]
            unicast_peers = ["10.77.0.1"]
            """
        let out = HostConfig.merge(file: "vipd.toml", incoming: active, own: mine)
        let c = try VipdConfig.parse(ConfigSource(path: "vipd.toml", text: out))
        #expect(c.instances[0].priority == 100 && c.instances[0].addresses.count == 2)
        #expect(c.instances[0].unicastPeers.map(\.description) == ["10.77.0.1"])

        let replicad = "[volume]\naddress = \"10.77.0.1\"\n[nfs]\nclients = [\"10.77.0.0/24\"]\nscan_interval = \"5s\"\n[state]\nmaster = \"master1\"\n"
        let ownReplicad = "[volume]\naddress = \"10.77.0.2\"\n[nfs]\nclients = [\"10.77.0.0/24\"]\n[state]\nmaster = \"master2\"\n"
        let r = try ReplicadConfig.parse(ConfigSource(path: "replicad.toml", text: HostConfig.merge(file: "replicad.toml", incoming: replicad, own: ownReplicad)))
        #expect(r.volume.address == m2.address && r.state.master == "master2" && r.nfs.scanInterval == .seconds(5))
        // The active's file without a [state] table: this master's name is kept all the same.
        let noState = "[volume]\naddress = \"10.77.0.1\"\n[nfs]\nclients = [\"10.77.0.0/24\"]\n"
        let r2 = try ReplicadConfig.parse(ConfigSource(path: "replicad.toml", text: HostConfig.merge(file: "replicad.toml", incoming: noState, own: ownReplicad)))
        #expect(r2.volume.address == m2.address && r2.state.master == "master2")
        #expect(HostConfig.merge(file: "cluster.toml", incoming: "a = 1\n", own: "a = 2\n") == "a = 1\n")
    }
}
