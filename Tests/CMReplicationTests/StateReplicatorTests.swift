import CMConfig
@testable import CMReplication
import CMTypes
import CMWire
import Foundation
import GRDB
import Logging
import Testing

/// Two masters, each with its own state directory, and one directory standing for the
/// volume both mount (in production GlusterFS puts every write on both bricks).
struct TwoMasters {
    let dir: String
    let a: StateReplicator
    let b: StateReplicator

    /// - handOverWait: zero where a master "dies" (it is simply no longer stepped).
    /// - interval: 3 × interval without a copy is a master's silence (a busy test machine
    ///   must not make a live master look dead).
    init(handOverWait: Duration = .zero, interval: Duration = .milliseconds(50)) throws {
        dir = NSTemporaryDirectory() + "cm-state-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: "\(dir)/volume", withIntermediateDirectories: true)
        a = StateReplicator(config: Self.config(dir, "a", interval), workDirectory: "\(dir)/a/replicad", logger: Logger(label: "test-a"), volumeMounted: { _ in true }, handOverWait: handOverWait)
        b = StateReplicator(config: Self.config(dir, "b", interval), workDirectory: "\(dir)/b/replicad", logger: Logger(label: "test-b"), volumeMounted: { _ in true }, handOverWait: handOverWait)
    }

    static func config(_ dir: String, _ name: String, _ interval: Duration = .milliseconds(50)) -> ReplicadConfig {
        var c = ReplicadConfig()
        c.state.interval = interval
        c.volume.mount = "\(dir)/volume"
        c.state.master = name
        c.state.databases = [ReplicadConfig.Database(name: "pxed", path: "\(dir)/\(name)/pxed/pxed.sqlite")]
        return c
    }

    /// A master's database, as its daemon keeps it: WAL mode, a writer that stays open.
    func database(_ master: String) throws -> DatabasePool {
        try FileManager.default.createDirectory(atPath: "\(dir)/\(master)/pxed", withIntermediateDirectories: true)
        let pool = try DatabasePool(path: "\(dir)/\(master)/pxed/pxed.sqlite")
        try pool.write { try $0.execute(sql: "CREATE TABLE IF NOT EXISTS nodes (name TEXT PRIMARY KEY, at REAL NOT NULL)") }
        return pool
    }

    func names(_ pool: DatabasePool) throws -> [String] {
        try pool.read { try String.fetchAll($0, sql: "SELECT name FROM nodes ORDER BY name") }
    }

    func cleanUp() { try? FileManager.default.removeItem(atPath: dir) }
}

@Suite struct StateReplicatorTests {
    @Test func theStandbyTakesOverWithEveryCommitTheActiveCopied() async throws {
        let m = try TwoMasters()
        defer { m.cleanUp() }
        let dbA = try m.database("a"), dbB = try m.database("b")
        try await dbB.write { try $0.execute(sql: "INSERT INTO nodes VALUES ('stale-on-b', 0)") }

        m.a.setRole(.active, epoch: Epoch(10))
        m.b.setRole(.standby, epoch: Epoch(9))
        #expect(m.a.step() == nil)  // restores: nothing newer on the volume
        #expect(try await m.a.ready("pxed").restoredFrom == nil)
        try await dbA.write { try $0.execute(sql: "INSERT INTO nodes VALUES ('node001', 1), ('node002', 2)") }
        #expect(m.a.step() == nil)
        #expect(FileManager.default.fileExists(atPath: "\(m.dir)/volume/state/a/pxed.sqlite"))
        #expect(m.b.step() == nil)  // a standby publishes nothing
        #expect(!FileManager.default.fileExists(atPath: "\(m.dir)/volume/state/b"))
        await #expect(throws: WireError.self) { try await m.b.ready("pxed") }

        // a is gone; b becomes active with a newer epoch and restores a's copy in place,
        // under its daemon's open connection.
        m.b.setRole(.active, epoch: Epoch(11))
        #expect(m.b.step() == nil)
        let reply = try await m.b.ready("pxed")
        #expect(reply.restoredFrom == "a" && reply.epoch == Epoch(10), "\(reply)")
        #expect(try m.names(dbB) == ["node001", "node002"])
        try await dbB.write { try $0.execute(sql: "INSERT INTO nodes VALUES ('node003', 3)") }
        #expect(m.b.step() == nil)
        let status = m.b.status()
        #expect(status.publishing && status.replicas.map(\.master) == ["b", "a"] && status.conflicts.isEmpty, "\(status)")
        #expect(status.databases.first?.pendingSince == nil && status.databases.first?.copied != nil)

        // a comes back: standby first; when it is active again it takes b's newer state.
        m.a.setRole(.standby, epoch: Epoch(12))
        m.a.setRole(.active, epoch: Epoch(13))
        #expect(m.a.step() == nil)
        #expect(try await m.a.ready("pxed").restoredFrom == "b")
        #expect(try m.names(dbA) == ["node001", "node002", "node003"])
    }

    @Test func nothingIsRestoredOrPublishedBeforeTheVolumeIsMounted() async throws {
        let m = try TwoMasters()
        defer { m.cleanUp() }
        let dbA = try m.database("a")
        try await dbA.write { try $0.execute(sql: "INSERT INTO nodes VALUES ('node001', 1)") }
        let unmounted = StateReplicator(config: TwoMasters.config(m.dir, "a"), workDirectory: "\(m.dir)/a/replicad", logger: Logger(label: "test"))
        unmounted.setRole(.active, epoch: Epoch(1))
        #expect(unmounted.step()?.contains("not mounted") == true)
        #expect(!FileManager.default.fileExists(atPath: "\(m.dir)/volume/state"))
        await #expect(throws: WireError.self) { try await unmounted.ready("pxed", timeout: .milliseconds(100)) }
    }

    /// Preemption: b is active and copying; a becomes active. a waits for b's last copy
    /// (b going standby copies and marks its replica handed over), so nothing b committed
    /// is missing and b's late copies are not taken for a conflict.
    @Test func aTakeoverWaitsForTheActiveMastersHandOver() async throws {
        let m = try TwoMasters(handOverWait: .seconds(30), interval: .seconds(10))
        defer { m.cleanUp() }
        let dbA = try m.database("a"), dbB = try m.database("b")
        m.b.setRole(.active, epoch: Epoch(10))
        m.b.step()
        try await dbB.write { try $0.execute(sql: "INSERT INTO nodes VALUES ('node001', 1)") }
        m.b.step()
        m.a.setRole(.active, epoch: Epoch(11))
        #expect(m.a.step() == nil)
        #expect(try m.names(dbA).isEmpty, "a restored before b handed over")
        try await dbB.write { try $0.execute(sql: "INSERT INTO nodes VALUES ('node002', 2)") }
        m.b.setRole(.standby, epoch: Epoch(12))
        #expect(m.a.step() == nil)
        #expect(try await m.a.ready("pxed").restoredFrom == "b")
        #expect(try m.names(dbA) == ["node001", "node002"])
        try await dbA.write { try $0.execute(sql: "INSERT INTO nodes VALUES ('node003', 3)") }
        m.a.step()
        let status = m.a.status()
        #expect(status.conflicts.isEmpty && status.replicas.first { $0.master == "b" }?.handedOver != nil, "\(status)")
    }

    /// The race a preemption runs: the returning master finishes its takeover before the
    /// one it preempts has gone standby. The hand-over, with nothing new to copy, must not
    /// stamp the replica as written after the takeover (it would be reported as a conflict,
    /// and set aside at that master's next takeover).
    @Test func aHandOverWithNothingNewIsNotAConflict() async throws {
        let m = try TwoMasters()
        defer { m.cleanUp() }
        let dbA = try m.database("a"), dbB = try m.database("b")
        m.b.setRole(.active, epoch: Epoch(10))
        m.b.step()
        try await dbB.write { try $0.execute(sql: "INSERT INTO nodes VALUES ('node001', 1)") }
        m.b.step()
        usleep(200_000)  // b's last copy is older than its silence: a does not wait for it
        m.a.setRole(.active, epoch: Epoch(11))
        #expect(m.a.step() == nil)
        #expect(try await m.a.ready("pxed").restoredFrom == "b")
        usleep(10_000)
        m.b.setRole(.standby, epoch: Epoch(11))
        m.a.step()
        let status = m.a.status()
        #expect(status.conflicts.isEmpty && status.replicas.first { $0.master == "b" }?.handedOver != nil, "\(status)")
        #expect(try m.names(dbA) == ["node001"])
    }

    @Test func nothingChangedIsNotCopiedAgain() throws {
        let m = try TwoMasters()
        defer { m.cleanUp() }
        let dbA = try m.database("a")
        try dbA.write { try $0.execute(sql: "INSERT INTO nodes VALUES ('node001', 1)") }
        m.a.setRole(.active, epoch: Epoch(1))
        m.a.step()
        m.a.step()
        let path = "\(m.dir)/volume/state/a/pxed.sqlite"
        let first = try FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as? Date
        usleep(20_000)
        m.a.step()
        #expect(try FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as? Date == first)
        try dbA.write { try $0.execute(sql: "INSERT INTO nodes VALUES ('node002', 2)") }
        m.a.step()
        #expect(try FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as? Date != first)
    }

    /// Each step copies every commit made before it, and nothing is copied between steps:
    /// the recovery point is one interval plus one copy (the time across two masters is
    /// measured by Tests/Integration/test-state-failover-netns.sh).
    @Test func eachStepCopiesEveryCommitBeforeItAndNoLaterOne() async throws {
        let m = try TwoMasters()
        defer { m.cleanUp() }
        let dbA = try m.database("a"), dbB = try m.database("b")
        m.a.setRole(.active, epoch: Epoch(1))
        m.a.step()
        for i in 1...20 {
            try await dbA.write { try $0.execute(sql: "INSERT INTO nodes VALUES (?, ?)", arguments: [String(format: "n%03d", i), Double(i)]) }
            if i % 4 == 0 { m.a.step() }
        }
        try await dbA.write { try $0.execute(sql: "INSERT INTO nodes VALUES ('after-the-last-step', 99)") }
        m.b.setRole(.active, epoch: Epoch(2))
        m.b.step()
        let names = try m.names(dbB)
        #expect(names.count == 20 && names.last == "n020", "\(names)")
    }

    @Test func aPartitionsStaleWritesAreKeptApartAndReportedNeverMerged() async throws {
        let m = try TwoMasters()
        defer { m.cleanUp() }
        let dbA = try m.database("a"), dbB = try m.database("b")
        m.a.setRole(.active, epoch: Epoch(10))
        try await dbA.write { try $0.execute(sql: "INSERT INTO nodes VALUES ('node001', 1)") }
        m.a.step()
        m.a.step()
        // Partition: b cannot hear a and becomes active too, with a newer epoch.
        m.b.setRole(.active, epoch: Epoch(20))
        m.b.step()
        #expect(try m.names(dbB) == ["node001"])
        try await dbB.write { try $0.execute(sql: "INSERT INTO nodes VALUES ('from-b', 2)") }
        m.b.step()
        usleep(10_000)
        try await dbA.write { try $0.execute(sql: "INSERT INTO nodes VALUES ('from-a-during-partition', 3)") }
        m.a.step()

        let conflicts = m.b.status().conflicts
        #expect(conflicts.count == 1 && conflicts.first?.master == "a" && conflicts.first?.newerMaster == "b", "\(conflicts)")

        // Healed: a (the lower epoch) yields; when it is active again it takes b's state and
        // its partition writes stay on the volume, apart.
        m.a.setRole(.standby, epoch: Epoch(21))
        m.a.setRole(.active, epoch: Epoch(30))
        #expect(m.a.step() == nil)
        #expect(try m.names(dbA) == ["from-b", "node001"])
        let kept = "\(m.dir)/volume/state/.conflicts/a-epoch-10/pxed.sqlite"
        let stale = try DatabaseQueue(path: kept)
        #expect(try await stale.read { try String.fetchAll($0, sql: "SELECT name FROM nodes ORDER BY name") } == ["from-a-during-partition", "node001"])
        let status = m.a.status()
        #expect(status.conflicts.map(\.path) == ["\(m.dir)/volume/state/.conflicts/a-epoch-10"], "\(status.conflicts)")
    }

    /// The other way round: the master that stays active after the heal (higher priority)
    /// had the older epoch; cm-vipd gives it a new one. Its state stands, nothing is
    /// restored, and the other's partition writes are the conflict.
    @Test func theMasterThatSurvivesAPartitionKeepsItsStateUnderANewEpoch() async throws {
        let m = try TwoMasters()
        defer { m.cleanUp() }
        let dbA = try m.database("a"), dbB = try m.database("b")
        m.a.setRole(.active, epoch: Epoch(10))
        try await dbA.write { try $0.execute(sql: "INSERT INTO nodes VALUES ('node001', 1)") }
        m.a.step()
        m.a.step()
        usleep(10_000)
        m.b.setRole(.active, epoch: Epoch(20))
        m.b.step()
        try await dbB.write { try $0.execute(sql: "INSERT INTO nodes VALUES ('from-b-during-partition', 2)") }
        m.b.step()
        try await dbA.write { try $0.execute(sql: "INSERT INTO nodes VALUES ('from-a', 3)") }
        m.a.step()
        #expect(m.a.needsNewEpoch() == nil, "b is still active: not a reason to race it")
        // Heal: b yields and hands over; a, which stays, asks cm-vipd for a new epoch.
        m.b.setRole(.standby, epoch: Epoch(26))
        #expect(m.a.needsNewEpoch()?.contains("b was active too (epoch 20") == true)
        m.a.setRole(.active, epoch: Epoch(27))
        #expect(m.a.needsNewEpoch() == nil)
        #expect(m.a.step() == nil)
        #expect(try m.names(dbA) == ["from-a", "node001"])
        let status = m.a.status()
        #expect(status.publishing && status.replicas.first?.master == "a" && status.replicas.first?.epoch == Epoch(27), "\(status.replicas)")
        #expect(status.conflicts.map(\.master) == ["b"], "\(status.conflicts)")
    }

    @Test func aDamagedReplicaIsNotRestored() async throws {
        let m = try TwoMasters()
        defer { m.cleanUp() }
        let dbA = try m.database("a"), dbB = try m.database("b")
        m.a.setRole(.active, epoch: Epoch(1))
        try await dbA.write { try $0.execute(sql: "INSERT INTO nodes VALUES ('node001', 1)") }
        m.a.step()
        m.a.step()
        try await dbB.write { try $0.execute(sql: "INSERT INTO nodes VALUES ('local', 1)") }
        let replica = "\(m.dir)/volume/state/a/pxed.sqlite"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: replica))
        for i in stride(from: 100, to: bytes.count, by: 7) { bytes[i] = 0xa5 }
        try bytes.write(to: URL(fileURLWithPath: replica))
        m.b.setRole(.active, epoch: Epoch(2))
        let problem = m.b.step()
        #expect(problem != nil, "a damaged replica was restored")
        #expect(try m.names(dbB) == ["local"])
        await #expect(throws: WireError.self) { try await m.b.ready("pxed", timeout: .milliseconds(100)) }
    }

    @Test func theNewestEpochIsTheSourceAndLaterWritesOfOlderOnesAreConflicts() {
        let t0 = Date(timeIntervalSince1970: 1000)
        func r(_ m: String, _ e: UInt64, since: Double, updated: Double) -> MasterReplica {
            MasterReplica(master: m, epoch: Epoch(e), since: t0 + since, updated: t0 + updated, databases: [:])
        }
        let failover = ReplicaChoice(master: "a", replicas: [r("a", 5, since: 0, updated: 10), r("b", 6, since: 11, updated: 20)])
        #expect(failover.source?.master == "b" && failover.conflicts.isEmpty && !failover.ownIsConflict)
        let partition = ReplicaChoice(master: "a", replicas: [r("a", 5, since: 0, updated: 15), r("b", 6, since: 11, updated: 20)])
        #expect(partition.source?.master == "b" && partition.conflicts.map(\.master) == ["a"] && partition.ownIsConflict)
        #expect(ReplicaChoice(master: "a", replicas: []).source == nil)
    }
}
