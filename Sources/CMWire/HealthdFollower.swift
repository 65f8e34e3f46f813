import CMTypes
import Logging

/// Following cm-healthd's verdicts from another daemon (cm-vipd's tracked checks, cm-lbd's
/// backends): subscribe, take the current list, then every transition; while cm-healthd is
/// away, retry every 2 s and keep the last known states (no news is not "down").
public enum HealthdFollower {
    /// Runs until cancelled. `update` gets the checks among `relevant` that are down now: once
    /// after each (re)connection and after every transition of one of them. Checks in
    /// `expected` that cm-healthd does not run are logged.
    public static func follow(socket path: String, peer: String, relevant: @escaping @Sendable (CheckID) -> Bool, expected: Set<CheckID> = [],
                              logger: Logger, update: @escaping @Sendable (Set<CheckID>) async -> Void) async {
        await WireFollower.follow(.healthd, socket: path, peer: peer, topics: [Topic.health], logger: logger,
                                  failed: { "cannot follow cm-healthd: \($0)" }) { conn in
            let checks = try await conn.requestAll(MessageType.healthList, HealthListRequest(), as: HealthListReply.self)
            let followed = checks.filter { relevant($0.id) }
            var down = Set(followed.filter { $0.state == .down }.map(\.id))
            let missing = expected.subtracting(checks.map(\.id))
            if !missing.isEmpty { logger.warning("cm-healthd has no check \(missing.map(\.description).sorted().joined(separator: ", ")) to follow") }
            logger.info("following \(followed.count) cm-healthd checks, \(down.count) down")
            await update(down)
            while let event = try await conn.nextEvent() {
                guard event.header.type == MessageType.healthTransition else { continue }
                let t = try event.body(as: HealthTransition.self)
                guard relevant(t.id) else { continue }
                if t.to == .down { down.insert(t.id) } else { down.remove(t.id) }
                await update(down)
            }
        }
    }
}
