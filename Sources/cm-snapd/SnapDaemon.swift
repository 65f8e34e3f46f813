import CMConfig
import CMDaemon
import CMSnap
import CMTypes
import CMWire
import Foundation
import Logging

/// cm-snapd plugged into the shared daemon lifecycle: `SnapService` behind the control
/// socket, and the timeline. Every operation runs on a thread of its own (`blocking`): a
/// snapshot of a large tree or a database takes seconds to minutes, and the socket keeps
/// answering meanwhile.
struct SnapDaemon: Daemon {
    static let suite = SuiteDaemon.snapd

    let service: SnapService

    static func loadConfiguration(configDir: String) throws -> SnapdConfig {
        try SnapdConfig.load(configDir: configDir)
    }

    static func make(configuration: SnapdConfig, options: DaemonOptions, events: EventHub, logger: Logger) async throws -> SnapDaemon {
        SnapDaemon(service: SnapService(config: configuration, events: events, logger: logger))
    }

    func routes(into router: inout WireRouter) {
        let service = service
        router.on(MessageType.snapshotList, SnapshotListRequest.self) { request, _ in
            try await blocking("snap-list") { try service.list(request) }
        }
        router.on(MessageType.snapshotShow, SnapshotRef.self) { ref, _ in try await blocking("snap-show") { try service.show(ref) } }
        router.on(MessageType.snapshotDiff, SnapshotDiffRequest.self) { request, _ in
            try await blocking("snap-diff") { try service.diff(request) }
        }
        router.on(MessageType.snapshotCreate, SnapshotCreateRequest.self) { request, context in
            var asked = request
            asked.requestedBy = Self.who(request.requestedBy, context)
            return try await blocking("snap-create") { [asked] in try service.create(asked) }
        }
        // Removing and restoring change the master's state for good: root only (the console
        // and the clustermaker group may look and take snapshots).
        router.on(MessageType.snapshotRemove, SnapshotRef.self) { ref, context in
            try Self.requireRoot(context, "removing a snapshot")
            try await blocking("snap-remove") { try service.remove(ref, by: Self.who(nil, context)) }
            return Empty()
        }
        router.on(MessageType.snapshotRestore, SnapshotRestoreRequest.self) { request, context in
            try Self.requireRoot(context, "restoring a snapshot")
            var asked = request
            asked.requestedBy = Self.who(request.requestedBy, context)
            return try await blocking("snap-restore") { [asked] in try service.restore(asked) }
        }
    }

    static func requireRoot(_ context: RequestContext, _ what: String) throws {
        guard context.peer.uid == 0 else { throw WireError(.permissionDenied, "\(what) needs root (uid \(context.peer.uid) asked)") }
    }

    /// "root via cmctl" from the socket's credentials, or what a trusted peer said for its user.
    static func who(_ said: String?, _ context: RequestContext) -> String {
        let user = getpwuid(context.peer.uid).map { String(cString: $0.pointee.pw_name) } ?? "uid \(context.peer.uid)"
        return said.map { "\($0) via \(context.peerName)" } ?? "\(user) via \(context.peerName)"
    }

    func run() async throws {
        let service = service
        while !Task.isCancelled {
            _ = await blocking("snap-timeline") { service.timelineTick() }
            // A minute at most between looks: a reload's new interval applies within it.
            let wait = service.nextTimeline().map { max(1, min(60, $0.timeIntervalSinceNow)) } ?? 60
            try? await Task.sleep(for: .seconds(wait))
        }
    }

    func apply(_ configuration: SnapdConfig) async throws { service.apply(configuration) }

    var statusLine: String { service.statusLine }
    func shutdown() async {}
}
