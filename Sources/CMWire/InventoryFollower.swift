import Foundation
import Logging

/// Following cm-pxed's node inventory from another daemon (cm-healthd checks its nodes):
/// subscribe to node events, take the list, and take it again after every event that may
/// change it (an edit, a node not yet listed, an address that moved): names, addresses and
/// groups stay current, boot states in the list do not (watch node events for those). While
/// cm-pxed is away (not installed, restarting), retry every 2 s and keep the last list.
public enum InventoryFollower {
    /// Runs until cancelled; `update` gets the whole inventory after each (re)connection and
    /// after each change. `wanted` is asked before each connection attempt: false pauses.
    public static func follow(socket path: String, peer: String, logger: Logger, wanted: @escaping @Sendable () async -> Bool,
                              update: @escaping @Sendable ([NodeInfo]) async -> Void) async {
        await WireFollower.follow(.pxed, socket: path, peer: peer, topics: [Topic.node], logger: logger, wanted: wanted, failed: { error in
            // No cm-pxed on this master (yet): nothing to follow, nothing to warn about.
            if let e = error as? WireError, e.code == .notRunning {
                logger.debug("cm-pxed is not running; checking cluster.toml's nodes only")
                return nil
            }
            return "cannot follow cm-pxed's inventory: \(error)"
        }) { conn in
            var nodes = try await conn.requestAll(MessageType.nodeList, NodeListRequest(), as: NodeListReply.self)
            logger.info("following cm-pxed's inventory: \(nodes.count) nodes")
            await update(nodes)
            while let event = try await conn.nextEvent() {
                // A boot step of a node just as the list has it (name, address) changes
                // nothing a follower uses: no new list for each of the three events of
                // every node's boot.
                if event.header.type == MessageType.nodeEvent, let e = try? event.body(as: NodeEvent.self),
                   nodes.contains(where: { $0.mac == e.mac && $0.name == e.node && $0.reachableAddress == e.address }) {
                    continue
                }
                nodes = try await conn.requestAll(MessageType.nodeList, NodeListRequest(), as: NodeListReply.self)
                await update(nodes)
            }
        }
    }
}
