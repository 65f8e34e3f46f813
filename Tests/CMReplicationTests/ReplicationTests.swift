import CMConfig
import CMImage
@testable import CMReplication
import CMTypes
import Foundation
import Testing

func fixture(_ name: String) throws -> XMLTree {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/\(name)")
    return try XMLTree.parse(String(decoding: try Data(contentsOf: url), as: UTF8.self))
}

@Suite struct GlusterCLITests {
    @Test func volumeInfoAsGlusterd10PrintsIt() throws {
        let v = try #require(GlusterCLI.parseVolumes(fixture("volume-info.xml")).first)
        #expect(v.name == "clustermaker")
        #expect(v.status == "Started")
        #expect(v.type == "Distribute")
        #expect(v.replicaCount == 1)
        #expect(v.bricks == ["10.178.0.1:/srv/test/brick/b"])
        #expect(v.options["network.ping-timeout"] == "3")
    }

    @Test func brickStatus() throws {
        let s = GlusterCLI.parseStatus(try fixture("volume-status.xml"))
        #expect(s.count == 1)
        #expect(s[0].brick == "10.178.0.1:/srv/test/brick/b" && s[0].online && s[0].pid != nil)
    }

    /// As glfsheal VOLUME info-summary --xml prints it (the counts set for the test): 3 entries
    /// on m1's brick that m2's lacks; on m2's one that glfsheal could not lock to look at.
    @Test func healSummaryAsGlfshealPrintsIt() throws {
        let h = GlusterCLI.parseHeal(try fixture("heal-info-summary.xml"))
        #expect(h == [GlusterHealBrick(brick: "10.182.0.11:/srv/test/m1/brick", status: "Connected", pending: 3, splitBrain: 0, needsHeal: 3),
                      GlusterHealBrick(brick: "10.182.0.12:/srv/test/m2/brick", status: "Connected", pending: 1, splitBrain: 0, needsHeal: 0)])
        #expect(ReplicaService.wantsHeal(h))
    }

    @Test func aMissingVolumeIsGlusterdsOwnError() throws {
        #expect(throws: GlusterError.self) { try GlusterCLI.check(fixture("volume-info-missing.xml"), ["volume", "info", "nope"]) }
        do {
            try GlusterCLI.check(fixture("volume-info-missing.xml"), ["volume", "info", "nope"])
        } catch {
            #expect("\(error)".contains("Volume does not exist"))
        }
    }
}

@Suite struct XMLTreeTests {
    @Test func elementsTextEntitiesAndSkippedParts() throws {
        let t = try XMLTree.parse("<?xml version=\"1.0\"?>\n<!-- c --><a x=\"1>2\"><b>one &amp; &lt;two&gt;</b><b/><c><![CDATA[<raw>]]></c></a>")
        #expect(t.name == "a")
        #expect(t.all("b").count == 2)
        #expect(t.value("b") == "one & <two>")
        #expect(t.value("c") == "<raw>")
    }

    @Test func badInputIsAnErrorNeverACrash() {
        for bad in ["", "Connection failed. Please check if gluster daemon is operational.", "<a>", "<a></b>", "<a", "<a x=\"", "<>",
                    "<a><![CDATA[x</a>", String(repeating: "<a>", count: 100) + String(repeating: "</a>", count: 100)] {
            #expect(throws: XMLTree.ParseError.self, "\(bad.prefix(20))") { try XMLTree.parse(bad) }
        }
    }
}

@Suite struct MountTests {
    let mountinfo = """
        22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
        90 22 0:52 / /srv/clustermaker rw,relatime shared:50 - fuse.glusterfs 10.77.0.1:clustermaker rw,user_id=0,group_id=0
        91 22 0:53 / /srv/with\\040space rw,relatime shared:51 - fuse.glusterfs 10.77.0.1:x rw
        92 22 0:54 / /srv/other rw,relatime shared:52 - tmpfs tmpfs rw
        """

    @Test func onlyAGlusterFSMountAtThatPathCounts() {
        #expect(ReplicaService.isMounted("/srv/clustermaker", mountinfo: mountinfo))
        #expect(ReplicaService.isMounted("/srv/clustermaker/", mountinfo: mountinfo))
        #expect(ReplicaService.isMounted("/srv/with space", mountinfo: mountinfo))
        #expect(!ReplicaService.isMounted("/srv/other", mountinfo: mountinfo))
        #expect(!ReplicaService.isMounted("/srv", mountinfo: mountinfo))
    }
}

@Suite struct ReplicadConfigTests {
    func parse(_ text: String) throws(ConfigErrors) -> ReplicadConfig {
        try ReplicadConfig.parse(ConfigSource(path: "replicad.toml", text: text))
    }

    @Test func defaultsAndRequiredKeys() throws {
        let c = try parse("[volume]\naddress = \"10.77.0.1\"\n[nfs]\nclients = [\"10.77.0.0/24\"]\n")
        #expect(c.volume.name == "clustermaker")
        #expect(c.volume.mount == "/srv/clustermaker")
        #expect(c.volume.pingTimeout == .seconds(3))
        #expect(c.nfs.clients.map(\.description) == ["10.77.0.0/24"])
        #expect(c.nfs.exportsFile == "/etc/ganesha/clustermaker-exports.conf")
        #expect(c.state.followVipd && c.state.interval == .milliseconds(50))
        #expect(c.state.databases == [ReplicadConfig.Database(name: "pxed", path: "/var/lib/clustermaker/pxed/pxed.sqlite")])
        #expect(ReplicadConfig.isMasterName(c.state.master))
    }

    @Test func theStateSectionAndItsDatabases() throws {
        let c = try parse("""
            [volume]
            address = "10.77.0.1"
            [nfs]
            clients = ["10.77.0.0/24"]
            [state]
            master = "master2"
            follow_vipd = false
            interval = "50ms"
            [[database]]
            name = "pxed"
            path = "/srv/state/pxed.sqlite"
            [[database]]
            name = "healthd"
            path = "/srv/state/healthd.sqlite"
            """)
        #expect(c.state.master == "master2" && !c.state.followVipd && c.state.interval == .milliseconds(50))
        #expect(c.state.databases.map(\.name) == ["pxed", "healthd"])
    }

    @Test func errorsNameTheKey() {
        for (text, expected) in [
            ("[volume]\n[nfs]\nclients = [\"10.77.0.0/24\"]\n", "address"),
            ("[volume]\naddress = \"10.77.0.1\"\n[nfs]\n", "clients"),
            ("[volume]\naddress = \"10.77.0.1\"\nbrick = \"relative\"\n[nfs]\nclients = [\"10.77.0.0/24\"]\n", "brick: \"relative\" is not an absolute path"),
            ("[volume]\naddress = \"10.77.0.1\"\nname = \"a/b\"\n[nfs]\nclients = [\"10.77.0.0/24\"]\n", "not a GlusterFS volume name"),
            ("[volume]\naddress = \"10.77.0.1\"\n[nfs]\nclients = [\"10.77.0.1/24\"]\n", "not an IPv4 network"),
            ("[volume]\naddress = \"10.77.0.1\"\nbogus = 1\n[nfs]\nclients = [\"10.77.0.0/24\"]\n", "bogus"),
            ("[volume]\naddress = \"10.77.0.1\"\n[nfs]\nclients = [\"10.77.0.0/24\"]\n[state]\nmaster = \"Master_1\"\n", "not a master name"),
            ("[volume]\naddress = \"10.77.0.1\"\n[nfs]\nclients = [\"10.77.0.0/24\"]\n[[database]]\nname = \"pxed\"\npath = \"x.db\"\n", "not an absolute file path"),
            ("[volume]\naddress = \"10.77.0.1\"\n[nfs]\nclients = [\"10.77.0.0/24\"]\n[[database]]\nname = \"pxed\"\npath = \"/a\"\n[[database]]\nname = \"pxed\"\npath = \"/b\"\n", "listed twice"),
            ("[volume]\naddress = \"10.77.0.1\"\n[nfs]\nclients = [\"10.77.0.0/24\"]\n[[database]]\npath = \"/a\"\n", "name"),
        ] {
            do {
                _ = try parse(text)
                Issue.record("accepted: \(text)")
            } catch {
                #expect("\(error)".contains(expected), "\(error)")
                #expect("\(error)".contains("replicad.toml:"), "\(error)")
            }
        }
    }
}

@Suite struct GaneshaExportsTests {
    @Test func oneReadOnlyExportPerRevisionAndSharedReadWrite() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cm-ganesha-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = ImageStore(directory: dir)
        for _ in 0..<2 {
            let staged = try store.incoming("base")
            try FileManager.default.createDirectory(atPath: "\(staged)/root", withIntermediateDirectories: true)
            try store.publish(staged, info: ImageRevisionInfo(name: "base", suite: "bookworm", packages: [], createdBy: "t", how: "build"))
        }
        let e = GaneshaExports.forStore(store, backend: .gluster, volume: "clustermaker", volumeServer: "10.77.0.1", clients: ["10.77.0.0/24"])
        #expect(e.exports.map(\.pseudo) == ["/shared", "/images/base/1", "/images/base/2"])
        #expect(e.exports.map(\.id) == [1, 2, 3])
        let text = e.render()
        #expect(text.contains("Pseudo = \"/images/base/2\";"))
        #expect(text.contains("volpath = \"/images/base/2/root\";"))
        #expect(text.contains("CLIENT { Clients = 10.77.0.0/24; Access_Type = RO; }"))
        #expect(text.contains("CLIENT { Clients = 10.77.0.0/24; Access_Type = RW; }"))
        #expect(text.components(separatedBy: "Access_Type = None;").count == 4)
        // A removed revision's number and export id are not given to the next one: clients'
        // file handles carry the id.
        try store.remove("base", revision: 2)
        let staged = try store.incoming("base")
        try FileManager.default.createDirectory(atPath: "\(staged)/root", withIntermediateDirectories: true)
        let next = try store.publish(staged, info: ImageRevisionInfo(name: "base", suite: "bookworm", packages: [], createdBy: "t", how: "build"))
        #expect(next.revision == 3 && next.exportId == 4)
        // VFS: absolute paths on the master.
        let vfs = GaneshaExports.forStore(store, top: "/srv/cm", backend: .vfs, clients: ["10.77.0.0/24"]).render()
        #expect(vfs.contains("Path = \"/srv/cm/images/base/1/root\";") && vfs.contains("FSAL { Name = VFS; }"))
    }
}

/// When a master may take the VIP back (`preempt_after_sync`): the volume whole as it sees it.
@Suite struct VolumeSyncTests {
    let volume = GlusterVolume(name: "clustermaker", id: "x", status: "Started", type: "Replicate", replicaCount: 2, arbiterCount: 0,
                               bricks: ["10.0.0.1:/b", "10.0.0.2:/b"], options: [:])
    func heal(_ b: String, _ status: String = "Connected", pending: Int = 0, splitBrain: Int = 0, needsHeal: Int? = nil) -> GlusterHealBrick {
        GlusterHealBrick(brick: b, status: status, pending: pending, splitBrain: splitBrain, needsHeal: needsHeal)
    }
    var healed: [GlusterHealBrick] { [heal("10.0.0.1:/b"), heal("10.0.0.2:/b")] }
    /// This master's three clients (its mount, its self-heal daemon, its ganesha) on each brick.
    let connected = ["10.0.0.1:/b": 3, "10.0.0.2:/b": 3]

    @Test func wholeWhenEveryBrickIsReachedHealedAndConnectedToThisMastersClients() {
        #expect(ReplicaService.notWhole(volume, heal: healed, connections: connected) == nil)
        // Bricks named by host name are not counted; the rest still is.
        #expect(ReplicaService.notWhole(volume, heal: healed, connections: ["10.0.0.1:/b": 3]) == nil)
    }

    @Test func aClientNotYetBackOnTheOtherBrickIsNotWhole() {
        // ganesha, restarted while 10.0.0.2 was out of reach, has not reconnected to its brick yet.
        #expect(ReplicaService.notWhole(volume, heal: healed, connections: ["10.0.0.1:/b": 3, "10.0.0.2:/b": 2])
            == "brick 10.0.0.2:/b: 2 of this master's 3 clients connected")
    }

    @Test func unreachableBricksHealingAndSplitBrainEachSaySo() {
        #expect(ReplicaService.notWhole(volume, heal: [heal("10.0.0.1:/b"), heal("10.0.0.2:/b", "Transport endpoint is not connected")],
                                        connections: connected) == "brick 10.0.0.2:/b: Transport endpoint is not connected")
        #expect(ReplicaService.notWhole(volume, heal: [heal("10.0.0.1:/b"), heal("10.0.0.2:/b", pending: 3)], connections: connected)
            == "brick 10.0.0.2:/b: 3 entries to heal")
        // Entries glfsheal could not lock (a heal, or a client writing) do not hold it back.
        #expect(ReplicaService.notWhole(volume, heal: [heal("10.0.0.1:/b"), GlusterHealBrick(brick: "10.0.0.2:/b", status: "Connected", pending: 1,
                                                                                            splitBrain: 0, needsHeal: 0)], connections: connected) == nil)
        #expect(ReplicaService.notWhole(volume, heal: [heal("10.0.0.1:/b", pending: 1, splitBrain: 1), heal("10.0.0.2:/b")], connections: connected)
            == "brick 10.0.0.1:/b: 1 entry in split brain")
        #expect(ReplicaService.notWhole(volume, heal: [heal("10.0.0.1:/b")], connections: connected) == "brick 10.0.0.2:/b: no heal information")
        #expect(ReplicaService.notWhole(volume, heal: nil, connections: connected) == "no heal information")
        var stopped = volume
        stopped.status = "Stopped"
        #expect(ReplicaService.notWhole(stopped, heal: nil, connections: [:]) == "volume clustermaker is stopped")
    }

    @Test func aSingleBrickNeedsNoHealInformation() {
        var one = volume
        one.bricks = ["10.0.0.1:/b"]
        one.replicaCount = 1
        #expect(ReplicaService.notWhole(one, heal: nil, connections: ["10.0.0.1:/b": 2]) == nil)
    }

    @Test func aHealIsStartedOnlyWhenItCanRun() {
        #expect(ReplicaService.wantsHeal([heal("10.0.0.1:/b", pending: 2), heal("10.0.0.2:/b")]))
        #expect(!ReplicaService.wantsHeal(healed))
        #expect(!ReplicaService.wantsHeal([heal("10.0.0.1:/b", pending: 2), heal("10.0.0.2:/b", "Transport endpoint is not connected")]))
        #expect(ReplicaService.wantsHeal([heal("10.0.0.1:/b", pending: 1, splitBrain: 1, needsHeal: 0), heal("10.0.0.2:/b")]))
        #expect(!ReplicaService.wantsHeal(nil))
        #expect(!ReplicaService.wantsHeal([heal("10.0.0.1:/b"), GlusterHealBrick(brick: "10.0.0.2:/b", status: "Connected", pending: 1, splitBrain: 0, needsHeal: 0)]))
    }

    /// /proc/net/tcp as m1 (10.181.0.11) prints it: its brick listens on 0.0.0.0:56451; its
    /// mount and ganesha are connected to both bricks, its self-heal daemon only to its own;
    /// m2's client is connected to m1's brick; glusterd talks to glusterd on 24007.
    @Test func connectionsAreCountedFromProcNetTCP() {
        func hex(_ a: String, _ port: UInt16) -> String {
            let o = a.split(separator: ".").map { UInt32($0)! }
            return String(format: "%08X:%04X", o[0] | o[1] << 8 | o[2] << 16 | o[3] << 24, port)
        }
        let m1 = "10.181.0.11", m2 = "10.181.0.12"
        let rows: [(String, UInt16, String, UInt16, String)] = [
            ("0.0.0.0", 56451, "0.0.0.0", 0, "0A"),        // m1's brick listening
            ("0.0.0.0", 24007, "0.0.0.0", 0, "0A"),        // glusterd
            (m1, 49149, m1, 56451, "01"), (m1, 56451, m1, 49149, "01"),   // mount → own brick (both ends)
            (m1, 49148, m1, 56451, "01"), (m1, 56451, m1, 49148, "01"),   // ganesha → own brick
            (m1, 49147, m1, 56451, "01"), (m1, 56451, m1, 49147, "01"),   // self-heal daemon → own brick
            (m1, 49146, m2, 60106, "01"),                  // mount → m2's brick
            (m1, 49145, m2, 60106, "01"),                  // ganesha → m2's brick
            (m1, 49144, m2, 60106, "06"),                  // an old connection in TIME_WAIT
            (m1, 56451, m2, 49150, "01"),                  // m2's client on m1's brick
            (m1, 1023, m2, 24007, "01"),                   // glusterd to glusterd
        ]
        let text = "  sl  local_address rem_address   st tx_queue\n" + rows.enumerated().map { i, r in
            "   \(i): \(hex(r.0, r.1)) \(hex(r.2, r.3)) \(r.4) 00000000:00000000 00:00000000 00000000     0        0 1 1"
        }.joined(separator: "\n")
        let counts = ReplicaService.brickConnections(procNetTCP: text, from: IPv4Address(10, 181, 0, 11),
                                                     bricks: ["10.181.0.11:/srv/b", "10.181.0.12:/srv/b", "m3.cluster:/srv/b"])
        #expect(counts == ["10.181.0.11:/srv/b": 3, "10.181.0.12:/srv/b": 2])
        // Read from this machine's own /proc/net/tcp without failing, whatever is there.
        let real = (try? String(contentsOfFile: "/proc/net/tcp", encoding: .utf8)) ?? ""
        #expect(ReplicaService.brickConnections(procNetTCP: real, from: IPv4Address(192, 0, 2, 1), bricks: ["192.0.2.1:/b"]) == ["192.0.2.1:/b": 0])
    }
}
