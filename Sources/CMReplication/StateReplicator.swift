import CMConfig
import CMTypes
import CMWire
import Foundation
import Glibc
import GRDB
import Logging
import Synchronization

/// The daemons' SQLite state, master → standby, through the GlusterFS volume: the active
/// master copies each database with SQLite's online backup API whenever it commits (polled
/// with `PRAGMA data_version`) into `VOLUME/state/MASTER/`, which GlusterFS writes to every
/// master's brick before the write returns. A master that becomes active first restores the
/// newest replica (highest epoch) into its own databases, then publishes under its own name.
/// Each master writes only its own directory, so no file on the volume is written by two, and
/// state a stale master wrote during a partition is kept and reported, never merged.
///
/// A full copy per change suits small databases (cm-pxed's inventory and leases: tens of KB
/// per hundred nodes); DESIGN.md leaves Litestream for large ones.
public final class StateReplicator: Sendable {
    struct Source {
        let database: ReplicadConfig.Database
        var queue: DatabaseQueue?
        var dataVersion: Int?
        var copied: Date?
        var bytes: Int?
        /// How long the last copy took, from seeing the commit to the volume's rename.
        var copySeconds: Double?
        var pendingSince: Date?
        var problem: String?
    }

    struct State {
        var config: ReplicadConfig.State
        var volumeMount: String
        var role: MasterRole = .standby
        var epoch = Epoch(0)
        /// When this master became active (the hand-over wait counts from it).
        var activeAt = Date()
        /// When its takeover finished: the state it publishes is this master's since then.
        /// A replica of an older epoch copied later than this is a conflict (a partition).
        var since = Date()
        /// The epoch whose restore is done: publishing and `state.ready` wait for it.
        var readyEpoch: Epoch?
        var restored: StateReadyReply?
        var sources: [String: Source] = [:]
        var problem: String?
        var waiting: String?
    }

    let state: Mutex<State>
    let workDirectory: String
    let logger: Logger
    /// Whether the volume is mounted at the path: until it is, the mount point is an empty
    /// local directory, where "no replica yet" would be a lie and a copy would be hidden.
    let volumeMounted: @Sendable (String) -> Bool
    /// Steps and hand-overs, one at a time: both write the same files.
    let work = Mutex(())
    /// How long a master taking over waits for the previous one's last copy.
    let handOverWait: Duration

    /// - Parameters:
    ///   - workDirectory: local scratch space (cm-replicad's state directory): copies are made
    ///     there and only whole files go to the volume.
    public init(config: ReplicadConfig, workDirectory: String, logger: Logger,
                volumeMounted: @escaping @Sendable (String) -> Bool = { ReplicaService.isMounted($0) }, handOverWait: Duration = .seconds(2)) {
        self.volumeMounted = volumeMounted
        self.handOverWait = handOverWait
        var s = State(config: config.state, volumeMount: config.volume.mount)
        if !config.state.followVipd { s.role = .active }
        state = Mutex(s)
        self.workDirectory = workDirectory
        self.logger = logger
    }

    public func apply(_ config: ReplicadConfig) {
        state.withLock { s in
            s.config = config.state
            s.volumeMount = config.volume.mount
            s.sources = s.sources.filter { name, source in config.state.databases.contains(source.database) }
        }
    }

    var root: String { state.withLock { "\($0.volumeMount)/state" } }
    var master: String { state.withLock { $0.config.master } }

    // MARK: Role

    /// This master's role from cm-vipd. Becoming active restores the newest replica before
    /// anything is published; becoming standby stops publishing.
    public func setRole(_ role: MasterRole, epoch: Epoch) {
        enum Change { case none, epochOnly, role(wasPublishing: Bool, epoch: Epoch, since: Date) }
        let change = state.withLock { s -> Change in
            guard s.role != role || s.epoch != epoch else { return .none }
            defer { s.role = role; s.epoch = epoch }
            // A new epoch is published from scratch. Leaving the active role is not: the
            // hand-over copies only commits not copied yet, because a copy stamps the replica
            // as written now, and a master that took over meanwhile would take that
            // needless copy for writes made after it (a conflict that is none).
            if role == .active { for k in s.sources.keys { s.sources[k]?.dataVersion = nil } }
            if s.role == role {
                // Still active, new epoch (a split brain this master survived): its state
                // stands and is published again under the new epoch; nothing is restored.
                if s.readyEpoch != nil { s.readyEpoch = epoch }
                return .epochOnly
            }
            let change = Change.role(wasPublishing: s.role == .active && s.readyEpoch == s.epoch, epoch: s.epoch, since: s.since)
            s.activeAt = Date()
            s.readyEpoch = nil
            s.restored = nil
            return change
        }
        switch change {
        case .none:
            return
        case .epochOnly:
            if role == .active { logger.notice("still active, epoch \(epoch): the state stands and is published under the new epoch") }
        case .role(let wasPublishing, let oldEpoch, let oldSince):
            logger.notice("role \(role.rawValue), epoch \(epoch): \(role == .active ? "restoring the newest replica, then publishing" : "not publishing")")
            if role == .standby, wasPublishing { handOver(epoch: oldEpoch, since: oldSince) }
        }
    }

    /// Leaving the active role: the last commits are copied under the epoch they were made
    /// in, and the replica is marked as handed over, so that the master taking over knows no
    /// more copies will come.
    func handOver(epoch: Epoch, since: Date) {
        work.withLock { _ in
            guard volumeMounted(state.withLock { $0.volumeMount }) else { return }
            for db in state.withLock({ $0.config.databases }) { _ = publish(db, epoch: epoch, since: since) }
            do {
                try writeMeta(epoch: epoch, since: since, copied: [:], handedOver: Date())
                logger.notice("handed over: the last copies of epoch \(epoch) are on the volume")
            } catch {
                logger.error("handing over: \(error)")
            }
        }
    }

    // MARK: The loop's step

    /// One pass: an active master that has not restored yet restores; one that has copies
    /// every database that changed. Returns the problem, if any (also kept for status).
    @discardableResult
    public func step() -> String? {
        work.withLock { _ in
            let (role, epoch, since, activeAt, ready, mount) = state.withLock { ($0.role, $0.epoch, $0.since, $0.activeAt, $0.readyEpoch, $0.volumeMount) }
            guard role == .active else { return nil }
            var problem: String?
            if !volumeMounted(mount) {
                problem = "the volume is not mounted at \(mount) yet: nothing is restored or published until it is"
            } else if ready != epoch {
                do {
                    try takeOver(epoch: epoch, activeAt: activeAt)
                } catch let waiting as Waiting {
                    if state.withLock({ $0.waiting != waiting.description }) { logger.notice("\(waiting)") }
                    state.withLock { $0.waiting = waiting.description }
                } catch {
                    problem = "restoring the newest replica: \(error)"
                }
            } else {
                for db in state.withLock({ $0.config.databases }) {
                    if let p = publish(db, epoch: epoch, since: since) { problem = problem ?? p }
                }
            }
            let changed = state.withLock { s -> Bool in
                defer { s.problem = problem }
                return s.problem != problem
            }
            if changed, let problem { logger.error("\(problem)") }
            return problem
        }
    }

    /// Restores every database from the newest replica (unless this master's own is the
    /// newest), keeps this master's older directory aside when it holds writes made after
    /// the newer epoch began, and then lets publishing start. A master that may still be
    /// copying (no hand-over mark, a copy within the last few intervals) is waited for, up
    /// to `handOverWait` after this master became active.
    func takeOver(epoch: Epoch, activeAt: Date) throws {
        let me = master
        let replicas = try Self.readReplicas(root)
        let interval = state.withLock { $0.config.interval }
        let silence = max(Self.seconds(interval) * 3, 0.3)
        if Date().timeIntervalSince(activeAt) < Self.seconds(handOverWait),
           let busy = replicas.first(where: { $0.master != me && $0.handedOver == nil && Date().timeIntervalSince($0.updated) < silence }) {
            throw Waiting("\(busy.master) copied \(String(format: "%.2f", Date().timeIntervalSince(busy.updated))) s ago and has not handed over: waiting for its last copy")
        }
        let choice = ReplicaChoice(master: me, replicas: replicas)
        var reply = StateReadyReply(restoredFrom: nil, epoch: nil, copied: nil, message: "no replica on the volume yet: the local state stands")
        if let source = choice.source, source.master != me {
            for db in state.withLock({ $0.config.databases }) {
                guard source.databases[db.name] != nil else { continue }
                try restore(db, from: "\(root)/\(source.master)/\(db.name).sqlite")
            }
            reply = StateReadyReply(restoredFrom: source.master, epoch: source.epoch, copied: source.updated,
                                    message: "restored \(source.master)'s replica (epoch \(source.epoch), copied \(Self.stamp(source.updated)))")
            logger.notice("\(reply.message)")
        } else if let source = choice.source {
            reply = StateReadyReply(restoredFrom: nil, epoch: source.epoch, copied: source.updated,
                                    message: "this master's own replica (epoch \(source.epoch)) is the newest: the local state stands")
        }
        if choice.ownIsConflict, let own = replicas.first(where: { $0.master == me }) {
            // What this master wrote while a newer one was active stays on the volume, apart.
            let kept = "\(root)/.conflicts/\(me)-epoch-\(own.epoch)"
            try FileManager.default.createDirectory(atPath: "\(root)/.conflicts", withIntermediateDirectories: true)
            if FileManager.default.fileExists(atPath: kept) { try FileManager.default.removeItem(atPath: kept) }
            try FileManager.default.moveItem(atPath: "\(root)/\(me)", toPath: kept)
            logger.warning("this master wrote state at epoch \(own.epoch) until \(Self.stamp(own.updated)), after \(choice.source?.master ?? "?") became active; kept in \(kept), not merged")
        }
        state.withLock { s in
            guard s.epoch == epoch, s.role == .active else { return }
            s.readyEpoch = epoch
            s.restored = reply
            s.since = Date()
            s.waiting = nil
        }
    }

    /// Copies `db` to the volume if it changed since the last copy (or was never copied at
    /// this epoch). Returns a problem, or nil.
    func publish(_ db: ReplicadConfig.Database, epoch: Epoch, since: Date) -> String? {
        let now = Date()
        do {
            guard FileManager.default.fileExists(atPath: db.path) else { return nil }  // its daemon has not made it yet
            let queue = try state.withLock { s -> DatabaseQueue in
                if let q = s.sources[db.name]?.queue { return q }
                var c = Configuration()
                c.readonly = true
                c.busyMode = .timeout(2)
                let q = try DatabaseQueue(path: db.path, configuration: c)
                s.sources[db.name] = Source(database: db, queue: q)
                return q
            }
            let version = try queue.read { try Int.fetchOne($0, sql: "PRAGMA data_version") } ?? 0
            let last = state.withLock { $0.sources[db.name]?.dataVersion }
            guard version != last else { return nil }
            state.withLock { s in if s.sources[db.name]?.pendingSince == nil { s.sources[db.name]?.pendingSince = now } }
            let bytes = try copy(queue, name: db.name)
            let copied = Date()
            try writeMeta(epoch: epoch, since: since, copied: [db.name: copied])
            state.withLock { s in
                s.sources[db.name]?.dataVersion = version
                s.sources[db.name]?.copied = copied
                s.sources[db.name]?.bytes = bytes
                s.sources[db.name]?.copySeconds = copied.timeIntervalSince(now)
                s.sources[db.name]?.pendingSince = nil
                s.sources[db.name]?.problem = nil
            }
            return nil
        } catch {
            let p = "replicating \(db.name) (\(db.path)): \(error)"
            state.withLock { s in
                if s.sources[db.name] == nil { s.sources[db.name] = Source(database: db) }
                s.sources[db.name]?.problem = p
                // A file replaced under us (a restore, a new daemon) is opened afresh.
                s.sources[db.name]?.queue = nil
                s.sources[db.name]?.dataVersion = nil
            }
            return p
        }
    }

    /// A consistent copy of the database (backup API into a local file, switched to the
    /// rollback journal so that no -wal/-shm files are needed beside it), then onto the
    /// volume: written, fsynced, renamed. The restore checks it.
    func copy(_ source: DatabaseQueue, name: String) throws -> Int {
        let local = "\(workDirectory)/\(name).copy.sqlite"
        try? FileManager.default.removeItem(atPath: local)
        try FileManager.default.createDirectory(atPath: workDirectory, withIntermediateDirectories: true)
        do {
            let dest = try DatabaseQueue(path: local)
            try source.backup(to: dest)
            try dest.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA journal_mode = DELETE") }
            try dest.close()
        }
        let data = try Data(contentsOf: URL(fileURLWithPath: local))
        let dir = "\(root)/\(master)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try Self.writeDurably(data, to: "\(dir)/\(name).sqlite")
        try? FileManager.default.removeItem(atPath: local)
        return data.count
    }

    /// Restores the replica at `path` into the database `db` (in place, through SQLite: its
    /// daemon's open connections see the new content at their next read), after checking it.
    func restore(_ db: ReplicadConfig.Database, from path: String) throws {
        let local = "\(workDirectory)/\(db.name).restore.sqlite"
        try FileManager.default.createDirectory(atPath: workDirectory, withIntermediateDirectories: true)
        try? FileManager.default.removeItem(atPath: local)
        try Data(contentsOf: URL(fileURLWithPath: path)).write(to: URL(fileURLWithPath: local))
        defer { try? FileManager.default.removeItem(atPath: local) }
        var c = Configuration()
        c.readonly = true
        let replica = try DatabaseQueue(path: local, configuration: c)
        let check = try replica.read { try String.fetchOne($0, sql: "PRAGMA quick_check") } ?? "no answer"
        guard check == "ok" else { throw ReplicationError("the replica \(path) is damaged (\(check)); the local database is kept") }
        try FileManager.default.createDirectory(atPath: (db.path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        var w = Configuration()
        w.busyMode = .timeout(5)
        let target = try DatabaseQueue(path: db.path, configuration: w)
        try replica.backup(to: target)
        try target.close()
        try replica.close()
        state.withLock { s in
            s.sources[db.name]?.queue = nil
            s.sources[db.name]?.dataVersion = nil
        }
    }

    // MARK: Meta and the volume's directory

    struct Meta: Codable {
        var master: String
        var epoch: Epoch
        var since: Date
        var updated: Date
        var databases: [String: Date]
        /// When this master left the active role after its last copy.
        var handedOver: Date?
    }

    func writeMeta(epoch: Epoch, since: Date, copied: [String: Date], handedOver: Date? = nil) throws {
        let me = master
        let path = "\(root)/\(me)/meta.json"
        var meta = (try? JSONDecoder.replica.decode(Meta.self, from: Data(contentsOf: URL(fileURLWithPath: path))))
            .flatMap { $0.epoch == epoch ? $0 : nil } ?? Meta(master: me, epoch: epoch, since: since, updated: since, databases: [:])
        for (k, v) in copied { meta.databases[k] = v }
        if let latest = copied.values.max() { meta.updated = latest }
        meta.handedOver = handedOver
        try Self.writeDurably(try JSONEncoder.replica.encode(meta), to: path)
    }

    /// Every master's replica on the volume; a directory without a readable meta.json is skipped.
    static func readReplicas(_ root: String) throws -> [MasterReplica] {
        guard FileManager.default.fileExists(atPath: root) else { return [] }
        return try FileManager.default.contentsOfDirectory(atPath: root).compactMap { name -> MasterReplica? in
            guard ReplicadConfig.isMasterName(name),
                  let data = try? Data(contentsOf: URL(fileURLWithPath: "\(root)/\(name)/meta.json")),
                  let m = try? JSONDecoder.replica.decode(Meta.self, from: data), m.master == name else { return nil }
            return MasterReplica(master: m.master, epoch: m.epoch, since: m.since, updated: m.updated, databases: m.databases, handedOver: m.handedOver)
        }.sorted { $0.epoch > $1.epoch }
    }

    static func readConflicts(_ root: String, current: ReplicaChoice) -> [ReplicaConflict] {
        var out = current.conflicts.map { c in
            ReplicaConflict(master: c.master, epoch: c.epoch, updated: c.updated, newerMaster: current.source?.master ?? "",
                            newerEpoch: current.source?.epoch ?? Epoch(0), newerSince: current.source?.since ?? Date(timeIntervalSince1970: 0),
                            path: "\(root)/\(c.master)")
        }
        let dir = "\(root)/.conflicts"
        for name in ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted() {
            guard let data = try? Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(name)/meta.json")),
                  let m = try? JSONDecoder.replica.decode(Meta.self, from: data),
                  // One replica, one report: a copy set aside while its original is still
                  // read in place (GlusterFS healing a partition's rename) is not a second one.
                  !current.conflicts.contains(where: { $0.master == m.master && $0.epoch == m.epoch }) else { continue }
            out.append(ReplicaConflict(master: m.master, epoch: m.epoch, updated: m.updated, newerMaster: "", newerEpoch: Epoch(0),
                                       newerSince: Date(timeIntervalSince1970: 0), path: "\(dir)/\(name)"))
        }
        return out
    }

    /// Written beside, fsynced, renamed: a reader sees the old file or the whole new one.
    static func writeDurably(_ data: Data, to path: String) throws { try replaceFile(path, with: data) }

    static func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }

    static func stamp(_ d: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: d)
    }

    // MARK: Answers

    /// Waits (up to `timeout`) until this master, active, has restored the newest state; the
    /// daemon asking then reloads its database. A standby answers at once that it is one.
    public func ready(_ name: String, timeout: Duration = .seconds(10)) async throws -> StateReadyReply {
        guard state.withLock({ $0.config.databases.contains { $0.name == name } }) else {
            throw WireError(.notFound, "no database \"\(name)\" in replicad.toml")
        }
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let (role, done) = state.withLock { s in (s.role, s.readyEpoch == s.epoch ? s.restored : nil) }
            guard role == .active else { throw WireError(.unavailable, "this master is standby: its state is restored when it becomes active") }
            if let done { return done }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw WireError(.unavailable, "the newest replica is not restored yet (\(state.withLock { $0.problem } ?? "still working"))")
    }

    public func status() -> StateStatusReply {
        let s = state.withLock { $0 }
        let root = "\(s.volumeMount)/state"
        let replicas = (try? Self.readReplicas(root)) ?? []
        let choice = ReplicaChoice(master: s.config.master, replicas: replicas)
        let publishing = s.role == .active && s.readyEpoch == s.epoch
        let newest = choice.source
        let dbs = s.config.databases.map { db -> DatabaseReplication in
            let src = s.sources[db.name]
            return DatabaseReplication(name: db.name, path: db.path, copied: publishing ? src?.copied : newest?.databases[db.name],
                                       bytes: publishing ? src?.bytes : nil, copySeconds: publishing ? src?.copySeconds : nil,
                                       pendingSince: publishing ? src?.pendingSince : nil, problem: src?.problem)
        }
        return StateStatusReply(master: s.config.master, role: s.role, epoch: s.epoch, publishing: publishing, databases: dbs,
                                replicas: replicas, conflicts: Self.readConflicts(root, current: choice), problem: s.problem)
    }

    /// Why this active master needs a new epoch from cm-vipd, or nil: another master's replica
    /// carries a newer epoch and that master has handed over since this one took over (both
    /// were active in a partition, and VRRP kept this one). Without a new epoch, that replica
    /// would count as the newest state. A master still publishing with a newer epoch (two
    /// active now) is a problem to report, not a reason to race it.
    public func needsNewEpoch() -> String? {
        let (role, ready, epoch, since, mount, me) = state.withLock { ($0.role, $0.readyEpoch, $0.epoch, $0.since, $0.volumeMount, $0.config.master) }
        guard role == .active, ready == epoch, volumeMounted(mount),
              let replicas = try? Self.readReplicas("\(mount)/state") else { return nil }
        guard let newer = replicas.first(where: { $0.master != me && $0.epoch > epoch && ($0.handedOver.map { $0 > since } ?? false) }) else { return nil }
        return "\(newer.master) was active too (epoch \(newer.epoch), newer than this master's \(epoch)) and handed over at \(Self.stamp(newer.handedOver!))"
    }

    /// The configuration follows the role as the state does: the active master publishes its
    /// own (to VOLUME/state/MASTER/etc), a standby applies the newest master's.
    public func syncConfiguration(_ sync: ConfigSync) {
        let (role, ready, epoch, mount, me) = state.withLock { ($0.role, $0.readyEpoch, $0.epoch, $0.volumeMount, $0.config.master) }
        guard volumeMounted(mount) else { return }
        let root = "\(mount)/state"
        do {
            if role == .active {
                guard ready == epoch else { return }
                try sync.publish(to: "\(root)/\(me)/etc")
            } else if let source = ReplicaChoice(master: me, replicas: try Self.readReplicas(root)).source, source.master != me {
                try sync.apply(from: "\(root)/\(source.master)/etc")
            }
        } catch {
            logger.error("configuration: \(error)")
        }
    }

    /// Runs `step` every interval until cancelled, on a thread of its own: a copy to the
    /// volume can stall while GlusterFS waits out an unreachable brick.
    public func run() async {
        while !Task.isCancelled {
            _ = await blocking("state-step") { self.step() }
            let interval = state.withLock { $0.config.interval }
            try? await Task.sleep(for: interval)
        }
    }
}

/// Which replica is the cluster's state, and which are stale writes: pure, from the metas.
struct ReplicaChoice {
    /// The newest epoch's replica: what a master taking over restores.
    let source: MasterReplica?
    /// Replicas of older epochs written after the newest epoch began (a partition: two
    /// masters active at once).
    let conflicts: [MasterReplica]
    /// This master's own replica is one of them.
    let ownIsConflict: Bool

    init(master: String, replicas: [MasterReplica]) {
        let newest = replicas.max { $0.epoch < $1.epoch }
        source = newest
        conflicts = newest.map { n in replicas.filter { $0.master != n.master && $0.epoch < n.epoch && $0.updated > n.since } } ?? []
        ownIsConflict = conflicts.contains { $0.master == master }
    }
}

/// Not an error yet: the step is tried again at the next interval.
struct Waiting: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

public struct ReplicationError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

extension JSONEncoder {
    static var replica: JSONEncoder {
        let e = JSONEncoder()
        e.dateEncodingStrategy = .millisecondsSince1970
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        return e
    }
}

extension JSONDecoder {
    static var replica: JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .millisecondsSince1970
        return d
    }
}

extension StateReplicator {
    public var statusLine: String {
        state.withLock { s in
            if let p = s.problem { return "state: \(p)" }
            switch (s.role, s.readyEpoch == s.epoch) {
            case (.standby, _): return "state: standby (epoch \(s.epoch))"
            case (.active, false): return "state: active, restoring the newest replica"
            case (.active, true): return "state: active, publishing \(s.config.databases.count) database(s)"
            }
        }
    }
}
