@testable import CMSnap
import CMConfig
import CMTypes
import CMWire
import Foundation
import GRDB
import Logging
import Synchronization
import Testing

func scratch(_ name: String) throws -> String {
    let dir = NSTemporaryDirectory() + "cm-\(name)-\(UInt32.random(in: 0 ... .max))"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

func writeText(_ path: String, _ text: String) throws {
    try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try text.write(toFile: path, atomically: false, encoding: .utf8)
}

func readText(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }

@Suite struct SnapdConfigTests {
    func parse(_ text: String) throws(ConfigErrors) -> SnapdConfig { try SnapdConfig.parse(ConfigSource(path: "snapd.toml", text: text)) }

    @Test func anEmptyFileGivesTheDefaults() throws {
        let c = try parse("")
        #expect(c.store == "/var/lib/clustermaker/snapshots" && c.system.paths == ["/etc", "/var/lib/clustermaker"])
        #expect(c.system.exclude == ["/var/lib/clustermaker/brick"] && c.system.services.contains("cm-pxed.service"))
        #expect(c.timeline.enabled && c.timeline.interval == .seconds(3600) && c.timeline.hourly == 10 && c.timeline.weekly == 0)
        #expect(c.dataSets.map(\.name) == ["system"])
    }

    @Test func dataSetsOfEveryKind() throws {
        let c = try parse("""
            [snapd]
            store = "/srv/snap/"
            [system]
            paths = ["/etc"]
            exclude = []
            [timeline]
            interval = "15m"
            hourly = 24
            min_age = "0s"
            [[data]]
            name = "pxed-db"
            type = "sqlite"
            path = "/var/lib/clustermaker/pxed/pxed.sqlite"
            timeline = false
            [[data]]
            name = "pg"
            type = "postgresql"
            path = "/var/lib/postgresql/15/main"
            port = 5433
            services = ["postgresql@15-main.service"]
            """)
        #expect(c.store == "/srv/snap" && c.system.paths == ["/etc"] && c.system.exclude.isEmpty)
        #expect(c.timeline.interval == .seconds(900) && c.timeline.hourly == 24 && c.timeline.minAge == .zero)
        #expect(c.dataSets.map(\.name) == ["system", "pxed-db", "pg"])
        #expect(c.data[0].kind == .sqlite && !c.data[0].timeline)
        #expect(c.data[1].kind == .postgresql && c.data[1].port == 5433 && c.data[1].user == "postgres" && c.data[1].services == ["postgresql@15-main.service"])
    }

    @Test func mistakesAreNamedWithTheirLine() {
        do {
            _ = try parse("""
                [system]
                paths = ["etc"]
                [[data]]
                name = "system"
                type = "sqlite"
                path = "/x.db"
                [[data]]
                name = "a"
                type = "oracle"
                path = "/x"
                [[data]]
                name = "b"
                type = "directory"
                path = "relative"
                services = ["not a unit"]
                """)
            Issue.record("accepted")
        } catch {
            let text = error.description
            #expect(text.contains("snapd.toml:2:") && text.contains("\"etc\" is not an absolute path"))
            #expect(text.contains("\"system\" is the restore points'"))
            #expect(text.contains("\"oracle\" is not a data set type"))
            #expect(text.contains("\"relative\" is not an absolute path"))
        }
    }
}

@Suite struct SnapshotGroupTests {
    /// /etc and /var/lib/clustermaker as the restore points hold them: one id across both,
    /// the brick and the store (inside a source) left out.
    @Test func aRestorePointOfTwoDirectories() throws {
        let dir = try scratch("group")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let etc = "\(dir)/etc", lib = "\(dir)/lib"
        try writeText("\(etc)/hostname", "m1\n")
        try writeText("\(etc)/clustermaker/pxed.toml", "[pxed]\n")
        try writeText("\(lib)/pxed/state", "1\n")
        try writeText("\(lib)/brick/huge", "replicated, not snapshotted\n")
        let group = try SnapshotGroup(name: "system", paths: [etc, lib], root: "\(lib)/snapshots", excluding: ["\(lib)/brick"])
        let libStore = "\(lib)/snapshots/\(SnapshotGroup.key(lib))"
        let one = try group.create(note: "first")
        #expect(one.id == 1 && one.source == "\(etc) \(lib)")
        #expect(!FileManager.default.fileExists(atPath: "\(libStore)/1/tree/brick"), "the brick is left out")
        #expect(!FileManager.default.fileExists(atPath: "\(libStore)/1/tree/snapshots"), "the store is left out of itself")

        try writeText("\(etc)/hostname", "m2\n")
        try writeText("\(lib)/pxed/state", "2\n")
        try writeText("\(lib)/brick/huge", "changed on the brick\n")
        let d = try group.diff(1, nil)
        #expect(d.changed.sorted() == ["\(etc)/hostname", "\(lib)/pxed/state"] && d.added.isEmpty && d.removed.isEmpty, "\(d)")

        try group.restore(1, file: "\(etc)/hostname")
        #expect(readText("\(etc)/hostname") == "m1\n" && readText("\(lib)/pxed/state") == "2\n")
        #expect(throws: SnapshotError.self) { try group.restore(1, file: "/nowhere/else") }
        #expect(throws: SnapshotError.self) { try group.restore(1, file: "\(lib)/brick/huge") }

        let (safety, changes) = try group.restore(1)
        #expect(safety.id == 2 && safety.kind == .safety && changes.changed == ["\(lib)/pxed/state"])
        #expect(readText("\(lib)/pxed/state") == "1\n")
        #expect(readText("\(lib)/brick/huge") == "changed on the brick\n", "a restore leaves the excluded paths alone")
        #expect(FileManager.default.fileExists(atPath: "\(libStore)/2/info.json"), "the store survives a restore of the directory holding it")

        // A group snapshot that one member lacks (a crash between members) is not listed.
        try group.members[1].remove(2)
        #expect(group.list().map(\.id) == [1])
        #expect(try group.create().id == 3, "ids go on from the highest any member had")
    }
}

@Suite(.serialized) struct SQLiteDataSetTests {
    /// A writer committing every 2 ms (500/s) while the data set is snapshotted: the copy is
    /// whole, and holds every commit made before the snapshot began.
    @Test func aSnapshotUnderAWriterHoldsEveryEarlierCommit() async throws {
        let dir = try scratch("sqlite")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = "\(dir)/app.sqlite"
        // As the suite's daemons open theirs (CMStore): a lock held for a moment is waited for.
        var config = Configuration()
        config.busyMode = .timeout(5)
        let db = try DatabaseQueue(path: path, configuration: config)
        try await db.writeWithoutTransaction { db in
            // WAL with synchronous=NORMAL, as applications that commit this often run it.
            try db.execute(sql: "PRAGMA journal_mode=WAL")
            try db.execute(sql: "PRAGMA synchronous=NORMAL")
            try db.execute(sql: "CREATE TABLE commits(id INTEGER PRIMARY KEY, payload TEXT)")
        }
        let committed = Atomic<Int>(0), stop = Atomic<Bool>(false)
        // One commit every 2 ms by the clock (500/s), for at most 20 s.
        let writer = Task.detached {
            var n = 0
            let start = ContinuousClock.now
            while !stop.load(ordering: .relaxed) && ContinuousClock.now < start + .seconds(20) {
                n += 1
                let id = n
                try await db.write { try $0.execute(sql: "INSERT INTO commits(id, payload) VALUES (?, ?)", arguments: [id, String(repeating: "x", count: 200)]) }
                committed.store(id, ordering: .releasing)
                let next = start + .milliseconds(2 * n)
                if next > ContinuousClock.now { try await Task.sleep(until: next) }
            }
            return n
        }
        var set = SnapdConfig.DataSet(name: "app", kind: .sqlite, paths: [path])
        set.timeline = false
        let snaps = try DataSetSnapshots(set, root: "\(dir)/store/app")
        var before: [Int] = []
        for _ in 0..<3 {
            try await Task.sleep(for: .milliseconds(300))
            before.append(committed.load(ordering: .acquiring))
            try await blocking("test-snap") { _ = try snaps.create() }
        }
        stop.store(true, ordering: .relaxed)
        let total = try await writer.value
        #expect(zip(before, before.dropFirst()).allSatisfy { $0 < $1 } && total > before.last!, "the writer committed throughout: \(before), \(total)")
        for (i, floor) in before.enumerated() {
            let copy = "\(dir)/restored-\(i + 1).sqlite"
            let r = try snaps.restore(i + 1, to: copy, verify: true, services: ServiceControl(program: "/bin/false"))
            #expect(r.verified == "integrity_check: ok" && r.copy == copy)
            let restored = try DatabaseQueue(path: copy)
            let (count, max) = try await restored.read { db in
                (try Int.fetchOne(db, sql: "SELECT count(*) FROM commits")!, try Int.fetchOne(db, sql: "SELECT max(id) FROM commits") ?? 0)
            }
            #expect(count == max && max >= floor, "snapshot \(i + 1): \(count) rows, ids to \(max); \(floor) were committed before it began")
            try restored.close()
        }
        // In place: the live database becomes snapshot 1 again, after a safety snapshot.
        let r = try snaps.restore(1, to: nil, verify: false, services: ServiceControl(program: "/bin/false"))
        #expect(r.safety?.id == 4 && r.restarted.isEmpty)
        let rows = try await db.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM commits")! }
        #expect(rows >= before[0] && rows < total, "\(rows) rows after restoring snapshot 1")
        #expect(try SQLiteCopy.integrityCheck(path) == "ok")
        #expect(throws: SnapshotError.self) { try snaps.restore(1, to: "\(dir)/restored-1.sqlite", verify: false, services: ServiceControl(program: "/bin/false")) }
        #expect(throws: SnapshotError.self) { try snaps.restore(99, to: nil, verify: false, services: ServiceControl(program: "/bin/false")) }
    }

    @Test func aFileThatIsNotADatabaseIsRefusedAndNothingIsListed() throws {
        let dir = try scratch("sqlite-bad")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeText("\(dir)/notes.sqlite", "just text, not a database\n")
        let snaps = try DataSetSnapshots(SnapdConfig.DataSet(name: "notes", kind: .sqlite, paths: ["\(dir)/notes.sqlite"]), root: "\(dir)/store/app")
        #expect(throws: SnapshotError.self) { try snaps.create() }
        #expect(snaps.list().isEmpty && readText("\(dir)/notes.sqlite") == "just text, not a database\n")
    }
}

@Suite struct SnapServiceTests {
    final class FakeClock: Sendable {
        let now = Mutex(Date(timeIntervalSince1970: 1_800_000_000))
        func advance(_ seconds: Double) { now.withLock { $0 = $0.addingTimeInterval(seconds) } }
        var date: Date { now.withLock { $0 } }
    }

    /// The timeline by a fake clock: snapshots when an interval has passed, retention applied,
    /// an event for each snapshot taken and removed.
    @Test func theTimelineTakesAndPrunes() async throws {
        let dir = try scratch("timeline")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeText("\(dir)/etc/hostname", "m1\n")
        var config = SnapdConfig()
        config.store = "\(dir)/store"
        config.system.paths = ["\(dir)/etc"]
        config.system.exclude = []
        config.timeline.interval = .seconds(3600)
        (config.timeline.hourly, config.timeline.daily, config.timeline.monthly, config.timeline.yearly) = (3, 0, 0, 0)
        config.timeline.minAge = .zero
        let clock = FakeClock()
        let hub = EventHub()
        let sub = hub.subscribe(topics: [Topic.snapshot])
        let service = SnapService(config: config, events: hub, logger: Logger(label: "test"), clock: { clock.date })

        #expect(service.timelineTick(), "nothing yet: the first is due at once")
        clock.advance(1800)
        #expect(!service.timelineTick(), "half an interval later: not due")
        for _ in 0..<5 {
            clock.advance(1800)
            #expect(service.timelineTick())
            clock.advance(1800)
        }
        let left = try service.list(SnapshotListRequest(dataSet: "system")).sets[0].snapshots
        #expect(left.map(\.id) == [4, 5, 6] && left.allSatisfy { $0.kind == .timeline }, "\(left.map(\.id))")
        #expect(service.nextTimeline() == left.last!.created.addingTimeInterval(3600))

        // A snapshot by hand is not the timeline's to prune.
        let mine = try service.create(SnapshotCreateRequest(dataSet: "system", note: "mine"))
        clock.advance(3600 * 5)
        service.timelineTick()
        #expect(try service.list(SnapshotListRequest()).sets[0].snapshots.contains { $0.id == mine.id })

        hub.unsubscribe(sub.id)
        var created = 0, removed = 0
        for await buffer in sub.events {
            let e = try ReceivedEnvelope(payload: buffer)
            if e.header.type == MessageType.snapshotCreated { created += 1 }
            if e.header.type == MessageType.snapshotRemoved { removed += 1 }
        }
        #expect(created == 8 && removed == 4, "\(created) created, \(removed) removed")

        #expect(throws: WireError.self) { try service.create(SnapshotCreateRequest(dataSet: "nope")) }
        #expect(throws: WireError.self) { try service.create(SnapshotCreateRequest(dataSet: "system", note: String(repeating: "x", count: 501))) }
        #expect(throws: WireError.self) { try service.create(SnapshotCreateRequest(dataSet: "system", note: "two\nlines")) }
        #expect(throws: WireError.self) { try service.show(SnapshotRef(dataSet: "system", id: 999)) }
    }

    /// A whole restore stops the data set's services, copies, starts them again, and says so;
    /// the store inside a directory of the set survives it.
    @Test func aRestoreStopsAndStartsTheServices() throws {
        let dir = try scratch("services")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeText("\(dir)/etc/hostname", "m1\n")
        try writeText("\(dir)/control.sh", "#!/bin/sh\necho \"$*\" >> \(dir)/calls\n")
        chmod("\(dir)/control.sh", 0o755)
        var config = SnapdConfig()
        config.store = "\(dir)/etc/snapshots"
        config.serviceControl = "\(dir)/control.sh"
        config.system.paths = ["\(dir)/etc"]
        config.system.exclude = []
        config.system.services = ["cm-pxed.service", "cm-lbd.service"]
        let service = SnapService(config: config, events: EventHub(), logger: Logger(label: "test"))
        let one = try service.create(SnapshotCreateRequest(dataSet: "system"))
        try writeText("\(dir)/etc/hostname", "m2\n")
        let r = try service.restore(SnapshotRestoreRequest(dataSet: "system", id: one.id))
        #expect(r.restarted == ["cm-pxed.service", "cm-lbd.service"] && r.changes.changed == ["\(dir)/etc/hostname"] && r.safety?.id == 2)
        #expect(readText("\(dir)/calls") == "stop cm-pxed.service cm-lbd.service\nstart cm-pxed.service cm-lbd.service\n")
        #expect(readText("\(dir)/etc/hostname") == "m1\n")
        #expect(try service.list(SnapshotListRequest()).sets[0].snapshots.map(\.id) == [1, 2], "the store inside /etc is left out and kept")
        #expect(throws: WireError.self) { try service.restore(SnapshotRestoreRequest(dataSet: "system", id: 9)) }
    }

    @Test func aDataSetWhoseDirectoryIsMissingIsReportedNotFatal() throws {
        let dir = try scratch("missing")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var config = SnapdConfig()
        config.store = "\(dir)/store"
        config.system.paths = ["\(dir)/not-there"]
        let service = SnapService(config: config, events: EventHub(), logger: Logger(label: "test"))
        let list = try service.list(SnapshotListRequest())
        #expect(list.sets[0].problem?.contains("no such directory") == true)
        #expect(throws: WireError.self) { try service.create(SnapshotCreateRequest(dataSet: "system")) }
        #expect(service.statusLine.contains("no such directory"))
    }
}
