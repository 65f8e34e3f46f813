import CMConfig
import CMDaemon
import CMReplication
import CMWire
import Logging

/// cm-replicad plugged into the shared daemon lifecycle.
struct ReplicaDaemon: Daemon {
    static let suite = SuiteDaemon.replicad

    let service: ReplicaService

    static func loadConfiguration(configDir: String) throws -> ReplicadConfig {
        try ReplicadConfig.load(configDir: configDir)
    }

    static func make(configuration: ReplicadConfig, options: DaemonOptions, events: EventHub, logger: Logger) async throws -> ReplicaDaemon {
        ReplicaDaemon(service: ReplicaService(config: configuration, logger: logger))
    }

    func routes(into router: inout WireRouter) {
        let service = service
        router.on(MessageType.volumeStatus, Empty.self) { _, _ in service.status() }
        router.on(MessageType.exportsSync, Empty.self) { _, _ in
            do { return try service.syncExports() } catch { throw WireError(.internal, "\(error)") }
        }
    }

    func run() async throws { await service.run() }
    func apply(_ configuration: ReplicadConfig) async throws { service.apply(configuration) }
    var statusLine: String { service.statusLine }
    func shutdown() async {}
}
