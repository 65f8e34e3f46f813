import CMConfig
import CMTypes
import CMWire
import Foundation
import Logging
import Synchronization

/// cm-snapd's work: the data sets of snapd.toml, their snapshots on request and on the
/// timeline, retention, and the events a standby and the console follow. One snapshot
/// operation at a time (`work`): two restores of one data set must not interleave, and a
/// timeline snapshot waits for a restore to finish. Every operation blocks (subprocesses,
/// disk), so the daemon calls them through `blocking`.
public final class SnapService: Sendable {
    struct State {
        var config: SnapdConfig
        /// Built on first use and after a reload; a data set that cannot be opened (its
        /// directory missing) is retried on the next call.
        var sets: [String: DataSetSnapshots] = [:]
        var problems: [String: String] = [:]
        var lastTimeline: Date?
        var created = 0
        var failed = 0
    }

    let state: Mutex<State>
    /// Held for the whole of an operation that changes a store.
    let work = Mutex(())
    let events: EventHub
    let logger: Logger
    let clock: @Sendable () -> Date

    public init(config: SnapdConfig, events: EventHub, logger: Logger, clock: @escaping @Sendable () -> Date = Date.init) {
        state = Mutex(State(config: config))
        self.events = events
        self.logger = logger
        self.clock = clock
    }

    public func apply(_ config: SnapdConfig) {
        state.withLock {
            $0.config = config
            $0.sets = [:]
            $0.problems = [:]
        }
    }

    public var config: SnapdConfig { state.withLock { $0.config } }

    static let maxNote = 500

    /// The data set `name`, opened if it is not yet.
    func dataSet(_ name: String) throws -> DataSetSnapshots {
        let (config, open) = state.withLock { ($0.config, $0.sets[name]) }
        if let open { return open }
        guard let spec = config.dataSets.first(where: { $0.name == name }) else {
            throw WireError(.notFound, "no data set \"\(name)\" in snapd.toml (data sets: \(config.dataSets.map(\.name).joined(separator: ", ")))")
        }
        do {
            try Self.makeStore(config.store)
            let set = try DataSetSnapshots(spec, root: config.storeDirectory(of: spec),
                                           alsoExcluding: [config.store] + config.dataSets.compactMap(\.store))
            state.withLock {
                $0.sets[name] = set
                $0.problems[name] = nil
            }
            logger.info("data set \(name): \(set.backendDescription)")
            return set
        } catch {
            state.withLock { $0.problems[name] = "\(error)" }
            throw WireError(.unavailable, "data set \(name): \(error)")
        }
    }

    /// The store's directory lets others through (0711) but not read it: pg_basebackup runs
    /// as postgres and writes its tree under it.
    /// On btrfs the store is made a subvolume of its own: a subvolume snapshot of a directory
    /// holding it (a btrfs root) then leaves it out by itself, and stays O(1).
    static func makeStore(_ path: String) throws {
        if !FileManager.default.fileExists(atPath: path) {
            let parent = (path as NSString).deletingLastPathComponent
            try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
            if (try? FilesystemKind.of(parent)) == .btrfs {
                _ = try? ChildProcess.run("/usr/bin/btrfs", ["subvolume", "create", path])
            }
        }
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        _ = chmod(path, 0o711)
    }

    public func list(_ request: SnapshotListRequest) throws -> SnapshotListReply {
        let config = config
        let names = config.dataSets.map(\.name)
        if let one = request.dataSet, !names.contains(one) { _ = try dataSet(one) }
        var sets: [SnapshotSetStatus] = []
        for spec in config.dataSets where request.dataSet == nil || request.dataSet == spec.name {
            if let set = try? dataSet(spec.name) {
                sets.append(SnapshotSetStatus(name: spec.name, kind: spec.kind.rawValue, paths: spec.paths, backend: set.backendDescription,
                                              timeline: spec.timeline, snapshots: set.list()))
            } else {
                sets.append(SnapshotSetStatus(name: spec.name, kind: spec.kind.rawValue, paths: spec.paths, backend: "", timeline: spec.timeline,
                                              snapshots: [], problem: state.withLock { $0.problems[spec.name] }))
            }
        }
        return SnapshotListReply(sets: sets, store: config.store, nextTimeline: nextTimeline())
    }

    public func show(_ ref: SnapshotRef) throws -> SnapshotShowReply {
        let set = try dataSet(ref.dataSet)
        do {
            return SnapshotShowReply(info: try set.info(ref.id), tree: try set.tree(ref.id), backend: set.backendDescription)
        } catch let e as SnapshotError { throw WireError(.notFound, e.description) }
    }

    public func create(_ request: SnapshotCreateRequest) throws -> SnapshotInfo {
        // Kept in info.json and every listing: a note is a line, not a document.
        if let note = request.note, note.count > Self.maxNote || note.contains("\n") {
            throw WireError(.invalidArgument, "note: one line of at most \(Self.maxNote) characters")
        }
        let set = try dataSet(request.dataSet)
        let info: SnapshotInfo
        do {
            info = try work.withLock { _ in try set.create(kind: request.kind, note: request.note, pre: request.pre, now: clock()) }
        } catch {
            state.withLock { $0.failed += 1 }
            logger.error("snapshot of \(request.dataSet) failed: \(error)")
            throw WireError(.internal, "snapshot of \(request.dataSet) failed: \(error)")
        }
        state.withLock { $0.created += 1 }
        logger.notice("snapshot \(info.id) of \(info.dataSet) taken (\(info.kind.rawValue), \(info.backend.rawValue), \(String(format: "%.2f", info.seconds)) s)\(request.requestedBy.map { ", asked by \($0)" } ?? "")\(info.note.map { ": \($0)" } ?? "")")
        try? events.publish(topic: Topic.snapshot, type: MessageType.snapshotCreated, body: SnapshotEvent(dataSet: info.dataSet, info: info))
        // A pair is whole (or a restore's safety made): the number limit may now apply.
        if info.kind == .post || info.kind == .safety { prune() }
        return info
    }

    public func remove(_ ref: SnapshotRef, by: String?) throws {
        let set = try dataSet(ref.dataSet)
        let info: SnapshotInfo
        do {
            info = try work.withLock { _ in
                let info = try set.info(ref.id)
                try set.remove(ref.id)
                return info
            }
        } catch let e as SnapshotError { throw WireError(.notFound, e.description) }
        logger.notice("snapshot \(ref.id) of \(ref.dataSet) removed\(by.map { " by \($0)" } ?? "")")
        try? events.publish(topic: Topic.snapshot, type: MessageType.snapshotRemoved, body: SnapshotEvent(dataSet: ref.dataSet, info: info))
    }

    public func diff(_ request: SnapshotDiffRequest) throws -> TreeDiff {
        let set = try dataSet(request.dataSet)
        do { return try set.diff(request.from, request.to) } catch let e as SnapshotError { throw WireError(.notFound, e.description) }
    }

    public func restore(_ request: SnapshotRestoreRequest) throws -> SnapshotRestoreReply {
        let set = try dataSet(request.dataSet)
        let control = ServiceControl(program: config.serviceControl)
        let who = request.requestedBy.map { ", asked by \($0)" } ?? ""
        do {
            if let file = request.file {
                try work.withLock { _ in try set.restore(request.id, file: file) }
                logger.notice("restored \(file) from snapshot \(request.id) of \(request.dataSet)\(who)")
                return SnapshotRestoreReply(safety: nil, changes: TreeDiff(changed: [file]), restarted: [], copy: nil, verified: nil)
            }
            let r = try work.withLock { _ in try set.restore(request.id, to: request.to, verify: request.verify, services: control, now: clock()) }
            if let safety = r.safety {
                try? events.publish(topic: Topic.snapshot, type: MessageType.snapshotCreated, body: SnapshotEvent(dataSet: request.dataSet, info: safety))
                prune()
            }
            if let copy = r.copy {
                logger.notice("snapshot \(request.id) of \(request.dataSet) restored to \(copy)\(r.verified.map { " (\($0))" } ?? "")\(who)")
            } else {
                logger.notice("snapshot \(request.id) of \(request.dataSet) restored in place (safety snapshot \(r.safety?.id ?? 0); \(r.changes.added.count) added, \(r.changes.changed.count) changed, \(r.changes.removed.count) removed; restarted: \(r.restarted.isEmpty ? "none" : r.restarted.joined(separator: " ")))\(who)")
            }
            return SnapshotRestoreReply(safety: r.safety, changes: r.changes, restarted: r.restarted, copy: r.copy, verified: r.verified)
        } catch let e as SnapshotError {
            logger.error("restoring snapshot \(request.id) of \(request.dataSet) failed: \(e)")
            throw WireError(.internal, e.description)
        }
    }

    // MARK: the timeline

    /// When the next timeline snapshots are due: an interval after the newest timeline
    /// snapshot (of any data set), now when there is none. Nil when the timeline is off.
    public func nextTimeline() -> Date? {
        let (config, last) = state.withLock { ($0.config, $0.lastTimeline) }
        guard config.timeline.enabled else { return nil }
        let newest = last ?? state.withLock { Array($0.sets.values) }.flatMap { $0.list().filter { $0.kind == .timeline }.map(\.created) }.max()
        return newest.map { $0.addingTimeInterval(Double(config.timeline.interval.components.seconds)) } ?? clock()
    }

    /// Takes the timeline snapshots if they are due, then prunes every data set's timeline.
    /// Returns whether it took them.
    @discardableResult
    public func timelineTick() -> Bool {
        let config = config
        guard config.timeline.enabled else { return false }
        for spec in config.dataSets { _ = try? dataSet(spec.name) }
        guard let due = nextTimeline(), clock() >= due else { return false }
        for spec in config.dataSets where spec.timeline {
            _ = try? create(SnapshotCreateRequest(dataSet: spec.name, kind: .timeline, note: "timeline"))
        }
        state.withLock { $0.lastTimeline = clock() }
        prune()
        return true
    }

    /// Timeline snapshots past snapd.toml's retention removed, and the oldest pre, post and
    /// safety snapshots past its number_limit.
    public func prune() {
        let config = config
        let t = config.timeline
        let policy = RetentionPolicy(hourly: t.hourly, daily: t.daily, weekly: t.weekly, monthly: t.monthly, yearly: t.yearly, minAge: t.minAge)
        for spec in config.dataSets {
            guard let set = try? dataSet(spec.name) else { continue }
            let all = set.list()
            let entries = all.filter { $0.kind == .timeline }.map { Retention.Entry(id: $0.id, date: $0.created) }
            let numbered = all.filter { [.pre, .post, .safety].contains($0.kind) }.map { Retention.Entry(id: $0.id, date: $0.created) }
            let doomed = Retention.prune(entries, policy: policy, now: clock())
                + Retention.pruneByNumber(numbered, limit: config.numberLimit, minAge: t.minAge, now: clock())
            for id in doomed {
                do { try remove(SnapshotRef(dataSet: spec.name, id: id), by: "the timeline's retention") } catch {
                    logger.error("pruning snapshot \(id) of \(spec.name): \(error)")
                }
            }
        }
    }

    public var statusLine: String {
        let (config, created, failed, problems) = state.withLock { ($0.config, $0.created, $0.failed, $0.problems) }
        var line = "\(config.dataSets.count) data sets in \(config.store); \(created) snapshots taken, \(failed) failed"
        if let (name, problem) = problems.sorted(by: { $0.key < $1.key }).first { line += "; \(name): \(problem)" }
        return line
    }
}
