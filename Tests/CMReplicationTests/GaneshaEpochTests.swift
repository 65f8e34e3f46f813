import CMConfig
import CMReplication
import CMTypes
import CMWire
import Foundation
import Testing

@Suite struct GaneshaEpochTests {
    let cluster: ClusterConfig
    let dir = NSTemporaryDirectory() + "cm-epoch-\(UUID().uuidString.prefix(8))"

    init() throws {
        cluster = try ClusterConfig.parse(ConfigSource(path: "cluster.toml", text: """
            [cluster]
            name = "c"
            [[master]]
            name = "m1"
            address = "10.0.0.11"
            [[master]]
            name = "m2"
            address = "10.0.0.12"
            """))
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    /// Two masters started in the same second get different epochs: their node ids differ.
    @Test func mastersDifferAndEachStartIsANewGeneration() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a1 = try GaneshaEpoch.next(master: "m1", cluster: cluster, generationFile: "\(dir)/a")
        let b1 = try GaneshaEpoch.next(master: "m2", cluster: cluster, generationFile: "\(dir)/b")
        #expect(a1 == 1 << 16 | 1 && b1 == 2 << 16 | 1)
        let a2 = try GaneshaEpoch.next(master: "m1", cluster: cluster, generationFile: "\(dir)/a")
        #expect(a2 == 1 << 16 | 2, "a restart of the same master is a new epoch")
        #expect(try String(contentsOfFile: "\(dir)/a", encoding: .utf8) == "2\n")
    }

    @Test func theGenerationWrapsWithinItsSixteenBits() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "65535\n".write(toFile: "\(dir)/w", atomically: true, encoding: .utf8)
        #expect(try GaneshaEpoch.next(master: "m2", cluster: cluster, generationFile: "\(dir)/w") == 2 << 16)
        try "garbage".write(toFile: "\(dir)/g", atomically: true, encoding: .utf8)
        #expect(try GaneshaEpoch.next(master: "m2", cluster: cluster, generationFile: "\(dir)/g") == 2 << 16 | 1)
    }

    @Test func aMasterNotInTheListIsRefusedAndNothingIsWritten() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect {
            try GaneshaEpoch.next(master: "m9", cluster: cluster, generationFile: "\(dir)/x")
        } throws: { "\($0)".contains("master \"m9\" is not in cluster.toml's [[master]] list (m1, m2)") }
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/x"))
    }
}

/// When ganesha starts afresh: the nodes must never come back to client state from before.
@Suite struct GaneshaRestartTests {
    let e1 = Epoch(100), e2 = Epoch(200)

    @Test func leavingTheActiveRoleOrAHealedPartitionRestartsIt() {
        #expect(ReplicaService.ganeshaRestartReason(from: (.active, e1), to: (.standby, e1))?.contains("left the active role") == true)
        #expect(ReplicaService.ganeshaRestartReason(from: (.active, e1), to: (.active, e2))?.contains("stayed active through a partition") == true)
    }

    @Test func takingOverOrStayingAsItWasDoesNot() {
        // Taking over: its ganesha was restarted when it last left the active role, and the
        // nodes are on their way to it now.
        #expect(ReplicaService.ganeshaRestartReason(from: (.standby, e1), to: (.active, e2)) == nil)
        #expect(ReplicaService.ganeshaRestartReason(from: (.standby, e1), to: (.standby, e2)) == nil)
        #expect(ReplicaService.ganeshaRestartReason(from: (.active, e1), to: (.active, e1)) == nil)
    }

    @Test func theUnitNameIsChecked() throws {
        let base = "[volume]\naddress = \"10.0.0.1\"\n[nfs]\nclients = [\"10.0.0.0/24\"]\n"
        #expect(try ReplicadConfig.parse(ConfigSource(path: "r.toml", text: base)).nfs.ganeshaUnit == "nfs-ganesha.service")
        #expect(try ReplicadConfig.parse(ConfigSource(path: "r.toml", text: base + "ganesha_unit = \"my-nfs.service\"\n")).nfs.ganeshaUnit == "my-nfs.service")
        #expect { try ReplicadConfig.parse(ConfigSource(path: "r.toml", text: base + "ganesha_unit = \"../x\"\n")) } throws: {
            "\($0)".contains("is not a systemd service unit name")
        }
    }
}
