import CMConfig
import CMTypes
import CMWire
import Foundation
import Logging
import NIOPosix
import Synchronization

/// cm-pxed's servers around the shared state: DHCP (or proxyDHCP), TFTP, HTTP boot, and the
/// role followed from cm-vipd.
public final class PXEDaemonService: Sendable {
    public let service: PXEService
    let logger: Logger
    let vipdSocket: String
    let replicadSocket: String
    private let dhcp: DHCPServer?
    private let tftp: TFTPServer?
    private let http: HTTPBootServer
    private let group: MultiThreadedEventLoopGroup
    /// What the sockets were opened with: a reload that changes it needs a restart.
    private let opened: PxedConfig.Daemon

    public init(config: PxedConfig, stateDirectory: String, configDirectory: String, runtimeDirectory: String, events: EventHub, logger: Logger) async throws {
        service = try PXEService(config: config, stateDirectory: stateDirectory, configDirectory: configDirectory, events: events, logger: logger)
        self.logger = logger
        vipdSocket = SuiteDaemon.vipd.socketPath(runtimeDirectory: runtimeDirectory)
        replicadSocket = SuiteDaemon.replicad.socketPath(runtimeDirectory: runtimeDirectory)
        opened = config.pxed
        for dir in [service.bootDirectory, service.imagesDirectory] {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        }
        if config.pxed.tftpPort != 0 {
            let t = try await TFTPServer(settings: .init(root: service.bootDirectory, port: UInt16(config.pxed.tftpPort),
                                                         maxBlockSize: config.pxed.tftpMaxBlockSize, maxWindowSize: config.pxed.tftpMaxWindowSize,
                                                         retries: config.pxed.tftpRetries, maxTransfers: config.pxed.tftpMaxTransfers,
                                                         maxPerClient: config.pxed.tftpMaxPerClient),
                                         counters: service.counters, logger: logger)
            tftp = t
        } else {
            tftp = nil
        }
        dhcp = config.pxed.mode == .off ? nil
            : try DHCPServer(service: service, interface: config.pxed.interface, proxy: config.pxed.mode == .proxy, logger: logger)
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        do {
            http = try await HTTPBootServer(service: service, listeners: HTTPBootServer.listeners(config.pxed), port: config.pxed.httpPort, group: group)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        dhcp?.start()
        logger.info("serving: DHCP \(config.pxed.mode.rawValue) on \(config.pxed.interface), TFTP \(config.pxed.tftpPort == 0 ? "off" : "port \(config.pxed.tftpPort)") from \(service.bootDirectory), HTTP on \(HTTPBootServer.listeners(config.pxed).map { "\($0):\(config.pxed.httpPort)" }.joined(separator: " and ")) from \(service.imagesDirectory)")
    }

    /// Follows cm-vipd's role when configured; otherwise waits until cancelled.
    public func run() async {
        guard service.config.pxed.followVipd else {
            while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
            return
        }
        let service = self.service
        let role: @Sendable (MasterRole) async -> Void = { role in
            if role == .active, !service.isActive { await self.restoreReplicatedState() }
            service.setActive(role == .active)
        }
        await WireFollower.follow(.vipd, socket: vipdSocket, peer: "cm-pxed", topics: [Topic.vip], logger: logger, failed: { error in
            // Without cm-vipd this master cannot know it is the active one: stay silent
            // rather than answer DHCP beside another master.
            service.setActive(false)
            return "cannot follow cm-vipd's role (\(error)); DHCP stays silent"
        }) { conn in
            let status = try await conn.request(MessageType.vipStatus, Empty(), as: VipStatusReply.self)
            await role(status.role)
            while let event = try await conn.nextEvent() {
                guard event.header.type == MessageType.vipRole else { continue }
                await role(try event.body(as: VipRoleChange.self).role)
            }
            throw WireError(.unavailable, "cm-vipd closed the connection")
        }
    }

    /// Before answering as the active master: cm-replicad restores the newest replicated
    /// inventory and leases (the other master's, when it was active last) into the database,
    /// and they are read again. Without cm-replicad the local database is served, and said so.
    func restoreReplicatedState() async {
        // cm-replicad waits up to 10 s per request for its volume and the restore; a stale
        // inventory would hand out leases the other master gave, so it is asked again for a
        // minute before the local one is served.
        let deadline = ContinuousClock.now + .seconds(60)
        var said = false
        while true {
            do {
                let reply = try await WireClient.withConnection(path: replicadSocket, daemon: SuiteDaemon.replicad.name, peer: "cm-pxed") { conn in
                    try await conn.request(MessageType.stateReady, StateReadyRequest(database: SuiteDaemon.pxed.short), as: StateReadyReply.self)
                }
                if reply.restoredFrom != nil { try service.reloadInventory() }
                logger.notice("replicated state: \(reply.message)")
                return
            } catch let error as WireError where error.code == .unavailable && ContinuousClock.now < deadline {
                if !said { logger.notice("waiting for cm-replicad to restore the replicated state: \(error.message)") }
                said = true
                try? await Task.sleep(for: .milliseconds(500))
            } catch {
                logger.error("the replicated state was not restored (\(error)); serving the local inventory and leases")
                return
            }
        }
    }

    /// Applies pools, groups, names and boot files at once; what the sockets and threads
    /// were opened with stays as it was until the next restart (and is said so).
    public func reload(_ config: PxedConfig) {
        var effective = config
        var restart: [String] = []
        func keep<T: Equatable>(_ key: String, _ path: WritableKeyPath<PxedConfig.Daemon, T>) {
            guard config.pxed[keyPath: path] != opened[keyPath: path] else { return }
            restart.append(key)
            effective.pxed[keyPath: path] = opened[keyPath: path]
        }
        keep("mode", \.mode)
        keep("interface", \.interface)
        keep("http_port", \.httpPort)
        keep("tftp_port", \.tftpPort)
        keep("tftp_max_block_size", \.tftpMaxBlockSize)
        keep("tftp_max_window_size", \.tftpMaxWindowSize)
        keep("tftp_retries", \.tftpRetries)
        keep("tftp_max_transfers", \.tftpMaxTransfers)
        keep("tftp_max_per_client", \.tftpMaxPerClient)
        keep("boot_dir", \.bootDirectory)
        keep("follow_vipd", \.followVipd)
        if HTTPBootServer.listeners(config.pxed) != HTTPBootServer.listeners(opened) {
            // DHCP takes the new addresses at once; the HTTP sockets stay where they are bound.
            logger.warning("pxed.toml: server_address or boot_address changed; HTTP boot stays on \(HTTPBootServer.listeners(opened).map(\.description).joined(separator: " and ")) until the next restart (systemctl restart cm-pxed)")
        }
        if !restart.isEmpty {
            logger.warning("pxed.toml: \(restart.joined(separator: ", ")) changed; the old values stay in force until the next restart (systemctl restart cm-pxed)")
        }
        service.apply(effective)
    }

    public func shutdown() async {
        dhcp?.stop()
        await tftp?.stop()
        await http.close()
        try? await group.shutdownGracefully()
    }
}
