import CMConfig
import CMDaemon
import CMHealth
import CMTypes
import CMWire
import Foundation
import Logging

/// cm-healthd plugged into the shared daemon lifecycle.
struct HealthDaemon: Daemon {
    struct Configuration: Sendable {
        var cluster: ClusterConfig
        var healthd: HealthdConfig
    }

    static let suite = SuiteDaemon.healthd

    let monitor: HealthMonitor
    /// cm-pxed's control socket, for follow_pxed.
    let pxedSocket: String

    static func loadConfiguration(configDir: String) throws -> Configuration {
        let cluster = try ClusterConfig.load(configDir: configDir)
        return Configuration(cluster: cluster, healthd: try HealthdConfig.load(configDir: configDir, cluster: cluster))
    }

    static func make(configuration: Configuration, options: DaemonOptions, events: EventHub, logger: Logger) async throws -> HealthDaemon {
        HealthDaemon(monitor: try await HealthMonitor(cluster: configuration.cluster, config: configuration.healthd,
                                                      stateDirectory: options.stateDirectory(daemon: name), events: events, logger: logger),
                     pxedSocket: SuiteDaemon.pxed.socketPath(runtimeDirectory: options.runtimeDir))
    }

    func routes(into router: inout WireRouter) {
        let monitor = self.monitor
        router.on(MessageType.healthList, HealthListRequest.self) { request, _ in await monitor.list(request) }
        router.on(MessageType.healthShow, HealthShowRequest.self) { request, _ in try await monitor.show(request) }
        router.on(MessageType.healthHistory, HealthHistoryRequest.self) { request, _ in try await monitor.history(request) }
        router.on(MessageType.healthSummary, HealthSummaryRequest.self) { request, _ in try await monitor.summary(request) }
        router.on(MessageType.metricsQuery, MetricsQuery.self) { request, _ in try await monitor.metrics(request) }
        router.on(MessageType.metricsLatest, Empty.self) { _, _ in await monitor.latestMetrics() }
    }

    func run() async throws {
        let monitor = self.monitor, socket = pxedSocket
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await monitor.run() }
            group.addTask {
                await InventoryFollower.follow(socket: socket, peer: "cm-healthd", logger: Logger(label: "cm-healthd"),
                                               wanted: { await monitor.followsPxed }) { nodes in
                    await monitor.setInventoryNodes(nodes.compactMap { n in
                        n.reachableAddress.map { NodeConfig(name: NodeName(n.name), address: $0, mac: n.mac, groups: [n.group]) }
                    })
                }
            }
            await group.next()
            group.cancelAll()
        }
    }
    func apply(_ configuration: Configuration) async throws { await monitor.reload(cluster: configuration.cluster, config: configuration.healthd) }
    var statusLine: String { monitor.statusLine }
    func shutdown() async { await monitor.shutdown() }
}
