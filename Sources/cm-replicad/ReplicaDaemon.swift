import CMConfig
import CMDaemon
import CMReplication
import CMTypes
import CMWire
import Logging
import Synchronization

/// cm-replicad plugged into the shared daemon lifecycle: the volume and its exports
/// (`ReplicaService`), and the daemons' state replicated through it (`StateReplicator`),
/// whose direction follows cm-vipd's role.
struct ReplicaDaemon: Daemon {
    static let suite = SuiteDaemon.replicad

    let service: ReplicaService
    let replicator: StateReplicator
    let configSync: ConfigSync
    let vipdSocket: String
    let events: EventHub
    /// The role cm-vipd last said, across reconnections to it.
    let lastRole = LastRole()
    let logger: Logger

    static func loadConfiguration(configDir: String) throws -> ReplicadConfig {
        try ReplicadConfig.load(configDir: configDir)
    }

    static func make(configuration: ReplicadConfig, options: DaemonOptions, events: EventHub, logger: Logger) async throws -> ReplicaDaemon {
        ReplicaDaemon(service: ReplicaService(config: configuration, logger: logger),
                      replicator: StateReplicator(config: configuration, workDirectory: options.stateDirectory(daemon: name), logger: logger),
                      configSync: ConfigSync(configDir: options.configDir, logger: logger),
                      vipdSocket: SuiteDaemon.vipd.socketPath(runtimeDirectory: options.runtimeDir), events: events, logger: logger)
    }

    func routes(into router: inout WireRouter) {
        let service = service, replicator = replicator
        // Every answer that asks glusterd or reads the volume runs on a thread of its own
        // (`blocking`): in a partition either can stall for seconds.
        router.on(MessageType.volumeStatus, Empty.self) { _, _ in await blocking("volume-status") { service.status() } }
        router.on(MessageType.exportsSync, Empty.self) { _, _ in
            do { return try await blocking("exports-sync") { try service.syncExports() } } catch { throw WireError(.internal, "\(error)") }
        }
        router.on(MessageType.volumeSync, Empty.self) { _, _ in
            if let last = service.lastSync { return last }
            return await blocking("volume-sync") { service.checkSync() }
        }
        let configSync = configSync
        router.on(MessageType.stateStatus, Empty.self) { _, _ in
            var s = await blocking("state-status") { replicator.status() }
            s.configProblem = configSync.problem
            s.configApplied = configSync.lastChange
            return s
        }
        router.on(MessageType.stateReady, StateReadyRequest.self) { request, _ in try await replicator.ready(request.database) }
    }

    func run() async throws {
        let service = service, replicator = replicator, configSync = configSync, vipdSocket = vipdSocket, logger = logger
        let follow = service.config.state.followVipd
        let lastRole = lastRole, events = events
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await service.run() }
            group.addTask {
                // Whether the volume is whole, for cm-vipd's preempt_after_sync: every 2 s on a
                // standby (the one that may take the VIP back), every 10 s on the active master.
                while !Task.isCancelled {
                    let before = service.lastSync
                    let now = await blocking("volume-sync") { service.checkSync() }
                    if before?.whole != now.whole || before?.reason != now.reason {
                        if now.whole {
                            logger.notice("the volume is whole: every brick online, nothing to heal, this master's clients connected to every brick")
                        } else if before?.whole != false {
                            logger.notice("the volume is not whole: \(now.reason ?? "?")")
                        } else {
                            logger.info("the volume is still not whole: \(now.reason ?? "?")")
                        }
                        try? events.publish(topic: Topic.volume, type: MessageType.volumeSync, body: now)
                    }
                    let active = lastRole.state.withLock { $0.last?.role == .active }
                    try? await Task.sleep(for: .seconds(active ? 10 : 2))
                }
            }
            group.addTask { await replicator.run() }
            group.addTask {
                var asked: String?
                while !Task.isCancelled {
                    let reason = await blocking("config-sync") { () -> String? in
                        replicator.syncConfiguration(configSync)
                        return follow ? replicator.needsNewEpoch() : nil
                    }
                    if let reason, reason != asked {
                        asked = reason
                        do {
                            _ = try await WireClient.withConnection(path: vipdSocket, daemon: SuiteDaemon.vipd.name, peer: "cm-replicad") { conn in
                                try await conn.request(MessageType.vipReassert, VipReassert(reason: reason), as: VipStatusReply.self)
                            }
                            logger.notice("asked cm-vipd for a new epoch: \(reason)")
                        } catch {
                            logger.error("cannot get a new epoch from cm-vipd (\(error)): \(reason)")
                        }
                    }
                    try? await Task.sleep(for: .seconds(1))
                }
            }
            if follow {
                group.addTask {
                    await WireFollower.follow(.vipd, socket: vipdSocket, peer: "cm-replicad", topics: [Topic.vip], logger: logger, failed: { error in
                        // Without cm-vipd this master cannot know it is the active one: it
                        // publishes nothing rather than beside another master.
                        replicator.setRole(.standby, epoch: Epoch(0))
                        return "cannot follow cm-vipd's role (\(error)); not publishing state"
                    }) { conn in
                        let status = try await conn.request(MessageType.vipStatus, Empty(), as: VipStatusReply.self)
                        Self.roleChanged(status.role, status.epoch, last: lastRole, replicator: replicator, service: service)
                        while let event = try await conn.nextEvent() {
                            guard event.header.type == MessageType.vipRole else { continue }
                            let change = try event.body(as: VipRoleChange.self)
                            Self.roleChanged(change.role, change.epoch, last: lastRole, replicator: replicator, service: service)
                        }
                        throw WireError(.unavailable, "cm-vipd closed the connection")
                    }
                }
            }
            await group.waitForAll()
        }
    }

    /// cm-vipd said this master's role: the state follows it, and ganesha starts afresh when
    /// the nodes may come back to stale client state (`ReplicaService.ganeshaRestartReason`),
    /// on a thread of its own (stopping ganesha can take seconds). Leaving the active role, the
    /// restart waits `LastRole.restartDelay`: the nodes' requests in flight to this master as
    /// the VIP moves are answered, not failed by a ganesha shutting down. Should this master
    /// become active again first, its ganesha restarts then, before the nodes settle on it.
    static func roleChanged(_ role: MasterRole, _ epoch: Epoch, last: LastRole, replicator: StateReplicator, service: ReplicaService) {
        replicator.setRole(role, epoch: epoch)
        enum Plan { case none, now(String), later(String, UInt64) }
        let plan = last.state.withLock { s -> Plan in
            defer { s.last = (role, epoch) }
            if let previous = s.last, let reason = ReplicaService.ganeshaRestartReason(from: previous, to: (role, epoch)) {
                if role == .active { s.pending = nil; return .now(reason) }
                s.generation += 1
                s.pending = s.generation
                return .later(reason, s.generation)
            }
            if role == .active, s.pending != nil {
                s.pending = nil
                return .now("this master became active again before its ganesha was restarted for leaving the role")
            }
            return .none
        }
        switch plan {
        case .none: break
        case .now(let reason):
            Task { await blocking("ganesha-restart") { service.restartGanesha(reason: reason) } }
        case .later(let reason, let token):
            Task {
                try? await Task.sleep(for: LastRole.restartDelay)
                let due = last.state.withLock { s in
                    guard s.pending == token else { return false }
                    s.pending = nil
                    return true
                }
                if due { await blocking("ganesha-restart") { service.restartGanesha(reason: reason) } }
            }
        }
    }

    /// The role cm-vipd last said, and a ganesha restart waiting to be done.
    final class LastRole: Sendable {
        struct State {
            var last: (role: MasterRole, epoch: Epoch)?
            /// The restart waiting for `restartDelay`, by its number.
            var pending: UInt64?
            var generation: UInt64 = 0
        }
        let state = Mutex(State())
        static let restartDelay: Duration = .seconds(5)
    }

    func apply(_ configuration: ReplicadConfig) async throws {
        service.apply(configuration)
        replicator.apply(configuration)
    }

    var statusLine: String { "\(service.statusLine); \(replicator.statusLine)" }
    func shutdown() async {}
}
