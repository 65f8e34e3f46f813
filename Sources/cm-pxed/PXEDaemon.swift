import CMConfig
import CMDaemon
import CMPXE
import CMWire
import Logging

/// cm-pxed plugged into the shared daemon lifecycle.
struct PXEDaemon: Daemon {
    static let suite = SuiteDaemon.pxed

    let core: PXEDaemonService

    static func loadConfiguration(configDir: String) throws -> PxedConfig {
        try PxedConfig.load(configDir: configDir)
    }

    static func make(configuration: PxedConfig, options: DaemonOptions, events: EventHub, logger: Logger) async throws -> PXEDaemon {
        PXEDaemon(core: try await PXEDaemonService(config: configuration, stateDirectory: options.stateDirectory(daemon: name),
                                                   configDirectory: options.configDir, runtimeDirectory: options.runtimeDir, events: events, logger: logger))
    }

    func routes(into router: inout WireRouter) {
        let service = core.service
        router.on(MessageType.pxeStatus, Empty.self) { _, _ in service.status() }
        router.on(MessageType.nodeList, NodeListRequest.self) { r, _ in service.nodeList(r) }
        router.on(MessageType.nodeShow, NodeRef.self) { r, _ in try service.show(r.node) }
        router.on(MessageType.nodeAdd, NodeAddRequest.self) { r, _ in try service.add(r) }
        router.on(MessageType.nodeSet, NodeSetRequest.self) { r, _ in try service.set(r) }
        router.on(MessageType.nodeRemove, NodeRef.self) { r, _ in try service.remove(r.node) }
        router.on(MessageType.nodeImport, NodeImportRequest.self) { r, _ in try service.importNodes(r) }
        router.on(MessageType.nodeReboot, NodeRebootRequest.self) { r, context in try await service.reboot(r, peer: context.peer) }
    }

    func run() async throws { await core.run() }
    func apply(_ configuration: PxedConfig) async throws { core.reload(configuration) }
    var statusLine: String { core.service.statusLine }
    func shutdown() async { await core.shutdown() }
}
