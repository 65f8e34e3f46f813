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
    private let dhcp: DHCPServer?
    private let tftp: TFTPServer?
    private let http: HTTPBootServer
    private let group: MultiThreadedEventLoopGroup
    /// What the sockets were opened with: a reload that changes it needs a restart.
    private let opened: PxedConfig.Daemon

    public init(config: PxedConfig, stateDirectory: String, runtimeDirectory: String, events: EventHub, logger: Logger) async throws {
        service = try PXEService(config: config, stateDirectory: stateDirectory, events: events, logger: logger)
        self.logger = logger
        vipdSocket = (runtimeDirectory as NSString).appendingPathComponent("vipd.sock")
        opened = config.pxed
        for dir in [service.bootDirectory, service.imagesDirectory] {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        }
        if config.pxed.tftpPort != 0 {
            let t = try TFTPServer(settings: .init(root: service.bootDirectory, port: UInt16(config.pxed.tftpPort),
                                                   maxBlockSize: config.pxed.tftpMaxBlockSize, maxWindowSize: config.pxed.tftpMaxWindowSize,
                                                   retries: config.pxed.tftpRetries),
                                   counters: service.counters, logger: logger)
            tftp = t
        } else {
            tftp = nil
        }
        dhcp = config.pxed.mode == .off ? nil
            : try DHCPServer(service: service, interface: config.pxed.interface, proxy: config.pxed.mode == .proxy, logger: logger)
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        do {
            http = try await HTTPBootServer(service: service, port: config.pxed.httpPort, group: group)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        tftp?.start()
        dhcp?.start()
        logger.info("serving: DHCP \(config.pxed.mode.rawValue) on \(config.pxed.interface), TFTP \(config.pxed.tftpPort == 0 ? "off" : "port \(config.pxed.tftpPort)") from \(service.bootDirectory), HTTP port \(config.pxed.httpPort) from \(service.imagesDirectory)")
    }

    /// Follows cm-vipd's role when configured; otherwise waits until cancelled.
    public func run() async {
        guard service.config.pxed.followVipd else {
            while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
            return
        }
        var warned = false
        while !Task.isCancelled {
            do {
                try await WireClient.withConnection(path: vipdSocket, daemon: "cm-vipd", peer: "cm-pxed") { conn in
                    try await conn.subscribe(topics: [Topic.vip])
                    let status = try await conn.request(MessageType.vipStatus, Empty(), as: VipStatusReply.self)
                    service.setActive(status.role == .active)
                    warned = false
                    while let event = try await conn.nextEvent() {
                        guard event.header.type == MessageType.vipRole else { continue }
                        service.setActive(try event.body(as: VipRoleChange.self).role == .active)
                    }
                }
            } catch is CancellationError {
                return
            } catch {
                // Without cm-vipd this master cannot know it is the active one: stay silent
                // rather than answer DHCP beside another master.
                service.setActive(false)
                if !Task.isCancelled, !warned { logger.warning("cannot follow cm-vipd's role (\(error)); DHCP stays silent, retrying every 2 s") }
                warned = true
            }
            try? await Task.sleep(for: .seconds(2))
        }
    }

    public func reload(_ config: PxedConfig) {
        var restart: [String] = []
        if config.pxed.mode != opened.mode { restart.append("mode") }
        if config.pxed.interface != opened.interface { restart.append("interface") }
        if config.pxed.httpPort != opened.httpPort { restart.append("http_port") }
        if config.pxed.tftpPort != opened.tftpPort { restart.append("tftp_port") }
        if config.pxed.bootDirectory != opened.bootDirectory { restart.append("boot_dir") }
        if !restart.isEmpty { logger.warning("pxed.toml: \(restart.joined(separator: ", ")) change at the next restart (systemctl restart cm-pxed)") }
        service.apply(config)
    }

    public func shutdown() async {
        dhcp?.stop()
        tftp?.stop()
        await http.close()
        try? await group.shutdownGracefully()
    }
}
