import CMConfig
import CMDaemon
import CMLB
import CMWire
import Logging

/// cm-lbd plugged into the shared daemon lifecycle.
struct LBDaemon: Daemon {
    static let suite = SuiteDaemon.lbd

    let service: LBService

    static func loadConfiguration(configDir: String) throws -> LbdConfig {
        try LbdConfig.load(configDir: configDir)
    }

    static func make(configuration: LbdConfig, options: DaemonOptions, events: EventHub, logger: Logger) async throws -> LBDaemon {
        // Frontend sockets from systemd are matched to frontends by the address they are bound to.
        let service = try LBService(config: configuration, passedSockets: ListenFDs.passed.all, runtimeDirectory: options.runtimeDir,
                                events: events, logger: logger)
        try await service.start()
        return LBDaemon(service: service)
    }

    func routes(into router: inout WireRouter) {
        let service = self.service
        router.on(MessageType.lbStatus, Empty.self) { _, _ in await service.status() }
        router.on(MessageType.lbMetrics, Empty.self) { _, _ in await service.metrics() }
        router.on(MessageType.lbDrain, LbDrainRequest.self) { request, _ in try await service.drain(request) }
    }

    func run() async throws { await service.run() }
    func apply(_ configuration: LbdConfig) async throws { try await service.reload(configuration) }
    var statusLine: String { service.statusLine }
    func shutdown() async { await service.shutdown() }
}
