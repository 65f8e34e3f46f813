import CMConfig
import CMDaemon
import CMVIP
import CMWire
import Logging

/// cm-vipd plugged into the shared daemon lifecycle.
struct VIPDaemon: Daemon {
    static let suite = SuiteDaemon.vipd

    let service: VIPService

    static func loadConfiguration(configDir: String) throws -> VipdConfig {
        try VipdConfig.load(configDir: configDir)
    }

    static func make(configuration: VipdConfig, options: DaemonOptions, events: EventHub, logger: Logger) async throws -> VIPDaemon {
        VIPDaemon(service: try VIPService(config: configuration, stateDirectory: options.stateDirectory(daemon: name),
                                          runtimeDirectory: options.runtimeDir, events: events, logger: logger))
    }

    func routes(into router: inout WireRouter) {
        let service = self.service
        router.on(MessageType.vipStatus, Empty.self) { _, _ in await service.status() }
        router.on(MessageType.vipReassert, VipReassert.self) { request, _ in try await service.reassert(request.reason) }
    }

    func run() async throws { await service.run() }
    func apply(_ configuration: VipdConfig) async throws { await service.reload(configuration) }
    var statusLine: String { service.statusLine }
    func shutdown() async { await service.shutdown() }
}

