import Logging

/// One daemon following another's state (cm-healthd the inventory of cm-pxed, cm-lbd and
/// cm-vipd the verdicts of cm-healthd, cm-pxed the role of cm-vipd): connect, subscribe, take
/// the current state and then every event; when the other daemon is away or the connection
/// drops, say so once, keep what is known, and try again every 2 s until cancelled.
public enum WireFollower {
    public static let retryInterval: Duration = .seconds(2)

    /// Runs until cancelled. `wanted` is asked before each attempt (false: wait and ask
    /// again). `session` gets the connection once subscribed to `topics` and reads it until it
    /// ends. `failed` is told of every failed or ended attempt and returns what to log as a
    /// warning the first time in a row, or nil for nothing.
    public static func follow(_ daemon: SuiteDaemon, socket path: String, peer: String, topics: [String], logger: Logger,
                              wanted: @escaping @Sendable () async -> Bool = { true },
                              failed: @escaping @Sendable (any Error) async -> String?,
                              session: @escaping @Sendable (WireConnection) async throws -> Void) async {
        var reported = false
        while !Task.isCancelled {
            if await wanted() {
                do {
                    try await WireClient.withConnection(path: path, daemon: daemon.name, peer: peer) { conn in
                        try await conn.subscribe(topics: topics)
                        reported = false
                        try await session(conn)
                    }
                } catch is CancellationError {
                    return
                } catch {
                    if Task.isCancelled { return }
                    let message = await failed(error)
                    if !reported, let message { logger.warning("\(message); retrying every \(retryInterval.components.seconds) s") }
                    reported = true
                }
            }
            try? await Task.sleep(for: retryInterval)
        }
    }
}
