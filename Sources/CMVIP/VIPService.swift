import CMConfig
import CMStore
import CMTypes
import CMWire
import Foundation
import GRDB
import Logging
import Synchronization

/// cm-vipd's core: runs one `VRRPInstanceRunner` per configured instance, turns the role
/// instance's state into this master's role with a rising epoch (stored, so it survives
/// restarts), publishes transitions and role changes, runs notify hooks, and feeds tracked
/// cm-healthd checks into the runners' priorities.
public actor VIPService {
    private var config: VipdConfig
    private var runners: [String: VRRPInstanceRunner] = [:]
    private var role: MasterRole = .standby
    private var epoch: Epoch
    private var tracking: Task<Void, Never>?
    /// Following cm-replicad's view of the volume, for instances with `preempt_after_sync`.
    private var volumeFollower: Task<Void, Never>?
    /// Why preemption is held for those instances now; nil: it is not.
    private var preemptHold: String? = VIPService.notSaidYet
    private static let notSaidYet = "cm-replicad has not said yet whether the volume is whole"
    private var transitionsTask: Task<Void, Never>?
    private let transitions: AsyncStream<VRRPInstanceRunner.Transition>
    private let transitionSink: AsyncStream<VRRPInstanceRunner.Transition>.Continuation
    private let summary = Mutex("starting")

    let store: DatabasePool
    let events: EventHub
    let logger: Logger
    let healthdSocket: String
    let replicadSocket: String

    public init(config: VipdConfig, stateDirectory: String, runtimeDirectory: String, events: EventHub, logger: Logger) throws {
        self.config = config
        self.events = events
        self.logger = logger
        self.healthdSocket = SuiteDaemon.healthd.socketPath(runtimeDirectory: runtimeDirectory)
        self.replicadSocket = SuiteDaemon.replicad.socketPath(runtimeDirectory: runtimeDirectory)
        store = try Store.open(path: (stateDirectory as NSString).appendingPathComponent("vipd.sqlite"), migrations: [
            Store.Migration("v1-roles") { db in
                try db.execute(sql: """
                    CREATE TABLE role_changes (epoch INTEGER PRIMARY KEY, role TEXT NOT NULL, instance TEXT NOT NULL, at INTEGER NOT NULL);
                    CREATE TABLE transitions (id INTEGER PRIMARY KEY AUTOINCREMENT, instance TEXT NOT NULL, from_state TEXT NOT NULL,
                        to_state TEXT NOT NULL, priority INTEGER NOT NULL, at INTEGER NOT NULL, reason TEXT NOT NULL);
                    """)
            },
        ])
        epoch = Epoch(UInt64(try store.read { db in try Int64.fetchOne(db, sql: "SELECT MAX(epoch) FROM role_changes") } ?? 0))
        (transitions, transitionSink) = AsyncStream.makeStream(bufferingPolicy: .unbounded)
    }

    public nonisolated var statusLine: String { summary.withLock { $0 } }

    public func run() async {
        let stream = transitions
        transitionsTask = Task { [weak self] in
            for await t in stream { await self?.transitioned(t) }
        }
        apply(config)
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(3600))
        }
        shutdown()
    }

    public func reload(_ new: VipdConfig) {
        apply(new)
    }

    /// Stops every instance gracefully: a master sends priority 0 so its backup takes over at once.
    public func shutdown() {
        tracking?.cancel()
        tracking = nil
        volumeFollower?.cancel()
        volumeFollower = nil
        let all = Array(runners.values)
        runners.removeAll()
        for r in all { r.send(.shutdown) }
        for r in all { r.stop() }
        updateSummary()
    }

    private func apply(_ new: VipdConfig) {
        config = new
        let wanted = Dictionary(new.instances.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        // preempt_after_sync alone changes without a restart (which would hand the VIP over).
        func sameRouter(_ a: VRRPInstanceConfig?, _ b: VRRPInstanceConfig) -> Bool {
            guard var a else { return false }
            a.preemptAfterSync = b.preemptAfterSync
            return a == b
        }
        for (name, runner) in runners where !sameRouter(wanted[name], runner.config) || runner.realtimePriority != new.vipd.realtimePriority {
            logger.info("stopping VRRP instance \(name) (\(wanted[name] == nil ? "removed" : "changed"))")
            runner.stop()
            runners[name] = nil
        }
        let sink = transitionSink
        for instance in new.instances where runners[instance.name] == nil {
            do {
                let runner = try VRRPInstanceRunner(config: instance, realtimePriority: new.vipd.realtimePriority, logger: logger) { t in
                    sink.yield(t)
                }
                runners[instance.name] = runner
                runner.start()
            } catch {
                logger.error("cannot start VRRP instance \(instance.name): \(error)")
            }
        }
        restartTracking()
        restartVolumeFollower()
        for instance in new.instances { runners[instance.name]?.holdPreemption(instance.preemptAfterSync ? preemptHold : nil) }
        updateSummary()
    }

    // MARK: Transitions and role

    private func transitioned(_ t: VRRPInstanceRunner.Transition) {
        let from = VRRPInstanceState(rawValue: t.from.rawValue) ?? .initialize
        let to = VRRPInstanceState(rawValue: t.to.rawValue) ?? .initialize
        do {
            try store.write { db in
                try db.execute(sql: "INSERT INTO transitions (instance, from_state, to_state, priority, at, reason) VALUES (?, ?, ?, ?, ?, ?)",
                               arguments: [t.instance, from.rawValue, to.rawValue, t.priority, Int64(t.at.timeIntervalSince1970 * 1000), t.reason])
            }
        } catch {
            logger.error("cannot store transition of \(t.instance): \(error)")
        }
        try? events.publish(topic: Topic.vip, type: MessageType.vipTransition,
                            body: VipTransition(instance: t.instance, from: from, to: to, priority: t.priority, at: t.at, reason: t.reason))
        // master → master (a split brain survived) is no change of state: no hooks run.
        if from != to { runHooks(t, state: to) }
        if t.instance == config.roleInstanceName {
            let newRole: MasterRole = to == .master ? .active : .standby
            // master → master is a split brain this master survived: still active, new epoch.
            if newRole != role || (from == .master && to == .master) { changeRole(to: newRole, instance: t.instance, at: t.at) }
        }
        updateSummary()
    }

    /// The epoch is a hybrid clock: one more than the last, and at least the wall clock in
    /// milliseconds, so it rises on every change here and a newer change on the other master
    /// (whose clock agrees to within the failover time) carries a higher number.
    private func changeRole(to newRole: MasterRole, instance: String, at: Date) {
        let wall = UInt64(max(0, at.timeIntervalSince1970 * 1000))
        epoch = Epoch(max(epoch.rawValue + 1, wall))
        role = newRole
        do {
            try store.write { db in
                try db.execute(sql: "INSERT INTO role_changes (epoch, role, instance, at) VALUES (?, ?, ?, ?)",
                               arguments: [Int64(epoch.rawValue), newRole.rawValue, instance, Int64(wall)])
            }
        } catch {
            logger.error("cannot store role change: \(error)")
        }
        logger.notice("role \(newRole.rawValue), epoch \(epoch)")
        try? events.publish(topic: Topic.vip, type: MessageType.vipRole, body: VipRoleChange(role: newRole, epoch: epoch, instance: instance, at: at))
    }

    private func runHooks(_ t: VRRPInstanceRunner.Transition, state: VRRPInstanceState) {
        guard let instance = config.instances.first(where: { $0.name == t.instance }) else { return }
        var commands: [[String]] = []
        switch state {
        case .master: if let c = instance.notifyMaster { commands.append(c) }
        case .backup: if let c = instance.notifyBackup { commands.append(c) }
        case .fault: if let c = instance.notifyFault { commands.append(c) }
        case .initialize: break
        }
        if let c = instance.notify { commands.append(c + ["INSTANCE", t.instance, state.rawValue.uppercased(), String(t.priority)]) }
        for command in commands {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: command[0])
            process.arguments = Array(command.dropFirst())
            var environment = ProcessInfo.processInfo.environment
            environment["CM_INSTANCE"] = t.instance
            environment["CM_STATE"] = state.rawValue
            environment["CM_PRIORITY"] = String(t.priority)
            environment["CM_ROLE"] = role.rawValue
            environment["CM_EPOCH"] = epoch.description
            process.environment = environment
            let logger = self.logger
            let name = command[0]
            process.terminationHandler = { p in
                if p.terminationStatus != 0 { logger.warning("notify hook \(name) for \(t.instance) \(state.rawValue) exited with status \(p.terminationStatus)") }
            }
            do {
                try process.run()
            } catch {
                logger.error("cannot run notify hook \(name): \(error)")
            }
        }
    }

    private func updateSummary() {
        let statuses = runners.values.map { $0.status() }.sorted { $0.name < $1.name }
        let text = statuses.isEmpty ? "no VRRP instances" : statuses.map { "\($0.name) \($0.state.rawValue)" }.joined(separator: ", ")
        let line = "\(role.rawValue) (epoch \(epoch)); \(text)"
        summary.withLock { $0 = line }
    }

    // MARK: Queries

    /// Another master's replicated state carries a newer epoch than this active master's (it
    /// was active too, in a partition, and has yielded): this master's role takes a new epoch,
    /// so that its state is the newest again (cm-replicad asks; vip.reassert).
    public func reassert(_ reason: String) throws -> VipStatusReply {
        guard role == .active else { throw WireError(.conflict, "this master is standby: only the active master takes a new epoch") }
        logger.notice("still active, new epoch: \(reason)")
        changeRole(to: .active, instance: config.roleInstanceName ?? "", at: Date())
        return status()
    }

    public func status() -> VipStatusReply {
        let statuses = config.instances.compactMap { runners[$0.name]?.status() }
        return VipStatusReply(role: role, epoch: epoch, roleInstance: config.roleInstanceName, instances: statuses)
    }

    // MARK: Tracking cm-healthd checks

    /// Follows cm-healthd's transitions for the checks any instance tracks; reconnects every
    /// 2 s while cm-healthd is away (tracked checks keep their last known state meanwhile).
    private func restartTracking() {
        tracking?.cancel()
        let tracked = Set(config.instances.flatMap(\.trackChecks))
        guard !tracked.isEmpty else { return }
        let path = healthdSocket
        let logger = self.logger
        // Weak: the task lives in `tracking`, and must not keep the service alive.
        weak let service = self
        tracking = Task {
            await HealthdFollower.follow(socket: path, peer: "cm-vipd", relevant: { tracked.contains($0) }, expected: tracked, logger: logger) { down in
                await service?.trackedChecks(down: down)
            }
        }
    }

    private func trackedChecks(down: Set<CheckID>) {
        for runner in runners.values where !runner.config.trackChecks.isEmpty {
            runner.setTrackedChecksDown(runner.config.trackChecks.filter { down.contains($0) })
        }
    }

    // MARK: Preemption after the volume's sync

    /// Follows cm-replicad's `volume.sync` for the instances with `preempt_after_sync`; while
    /// cm-replicad cannot be reached the volume's state is unknown, so preemption stays held
    /// (a master that hears no other still becomes master).
    private func restartVolumeFollower() {
        guard config.instances.contains(where: \.preemptAfterSync) else {
            volumeFollower?.cancel()
            volumeFollower = nil
            return
        }
        guard volumeFollower == nil else { return }
        preemptHold = Self.notSaidYet
        let path = replicadSocket
        let logger = self.logger
        weak let service = self
        volumeFollower = Task {
            await WireFollower.follow(.replicad, socket: path, peer: "cm-vipd", topics: [Topic.volume], logger: logger, failed: { error in
                await service?.volumeSynced(nil, unknown: "cm-replicad cannot be reached (\(error))")
                return "cannot follow cm-replicad's view of the volume (\(error)); preemption held"
            }) { conn in
                let now = try await conn.request(MessageType.volumeSync, Empty(), as: VolumeSync.self)
                await service?.volumeSynced(now, unknown: nil)
                while let event = try await conn.nextEvent() {
                    guard event.header.type == MessageType.volumeSync else { continue }
                    await service?.volumeSynced(try event.body(as: VolumeSync.self), unknown: nil)
                }
                throw WireError(.unavailable, "cm-replicad closed the connection")
            }
        }
    }

    private func volumeSynced(_ sync: VolumeSync?, unknown: String?) {
        let hold = sync.map { $0.whole ? nil : "the volume is not whole: \($0.reason ?? "?")" } ?? unknown
        guard hold != preemptHold else { return }
        preemptHold = hold
        for instance in config.instances where instance.preemptAfterSync { runners[instance.name]?.holdPreemption(hold) }
    }
}
