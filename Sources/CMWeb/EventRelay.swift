import CMConsole
import CMWire
import Foundation
import Hummingbird
import Logging
import NIOCore
import Synchronization

/// Live updates for the pages: one subscription per topic to the daemon that owns it, shared by
/// every open page (a hundred pages are a hundred Server-Sent Events streams, not a hundred
/// connections to cm-healthd). A topic's subscription starts with its first page and ends a
/// while after its last; a page that reads too slowly loses old events, never the daemon's.
public final class EventRelay: Sendable {
    struct Client {
        var topics: Set<String>
        var continuation: AsyncStream<ByteBuffer>.Continuation
    }

    struct State {
        var clients: [UInt64: Client] = [:]
        var nextID: UInt64 = 1
        var following: Set<String> = []
        /// Followed whether or not a page is open: the answer cache learns of every change.
        var always: Set<String> = []
    }

    /// The topics the console relays, and whose they are.
    public static let owners: [String: SuiteDaemon] = [Topic.health: .healthd, Topic.node: .pxed, Topic.vip: .vipd, Topic.lb: .lbd, Topic.snapshot: .snapd]
    /// Open streams at most; more get 503 (each holds a connection of the browser's).
    public static let maxClients = 1000

    let state = Mutex(State())
    let suite: SuiteClient
    let logger: Logger

    public init(suite: SuiteClient, logger: Logger) {
        self.suite = suite
        self.logger = logger
    }

    public var clientCount: Int { state.withLock { $0.clients.count } }

    /// A stream of SSE-framed events of `topics`; nil when the relay is full.
    func open(topics: Set<String>) -> (id: UInt64, stream: AsyncStream<ByteBuffer>)? {
        let (stream, continuation) = AsyncStream<ByteBuffer>.makeStream(bufferingPolicy: .bufferingNewest(256))
        let (id, start): (UInt64?, Set<String>) = state.withLock { s in
            guard s.clients.count < Self.maxClients else { return (nil, []) }
            let id = s.nextID
            s.nextID += 1
            s.clients[id] = Client(topics: topics, continuation: continuation)
            let start = topics.subtracting(s.following)
            s.following.formUnion(start)
            return (id, start)
        }
        guard let id else { return nil }
        for topic in start { Task { await follow(topic) } }
        return (id, stream)
    }

    /// Follows every topic from now on, so that the cache of the daemons' answers is dropped on
    /// each change even while no page is open (an API client then never gets an answer from
    /// before its own change, say a node it just added).
    public func followAll() {
        let start = state.withLock { s in
            s.always = Set(Self.owners.keys)
            let start = s.always.subtracting(s.following)
            s.following.formUnion(start)
            return start
        }
        for topic in start { Task { await follow(topic) } }
    }

    func close(_ id: UInt64) {
        let client = state.withLock { $0.clients.removeValue(forKey: id) }
        client?.continuation.finish()
    }

    func publish(_ topic: String, _ payload: ByteBuffer) {
        // The refresh this event causes must not get the answer from before it.
        for prefix in SuiteClient.cacheKeys[topic] ?? [] { suite.cache?.invalidate(prefix: prefix) }
        var frame = ByteBuffer(string: "event: \(topic)\ndata: ")
        var line = payload
        frame.writeBuffer(&line)
        frame.writeString("\n\n")
        state.withLock { s in
            for client in s.clients.values where client.topics.contains(topic) { client.continuation.yield(frame) }
        }
    }

    func wanted(_ topic: String) -> Bool {
        state.withLock { s in s.always.contains(topic) || s.clients.values.contains { $0.topics.contains(topic) } }
    }

    /// Keeps one subscription to `topic`'s daemon while any page wants it; reconnects every 2 s
    /// while the daemon is away.
    func follow(_ topic: String) async {
        guard let daemon = Self.owners[topic] else { return }
        var idleRounds = 0
        while true {
            let wanted = self.wanted(topic)
            idleRounds = wanted ? 0 : idleRounds + 1
            if idleRounds >= 3 {
                let stop = state.withLock { s in
                    guard !s.always.contains(topic), !s.clients.values.contains(where: { $0.topics.contains(topic) }) else { return false }
                    s.following.remove(topic)
                    return true
                }
                if stop { return }
            }
            if wanted {
                let result = await suite.ask(daemon) { conn -> Void in
                    try await conn.subscribe(topics: [topic])
                    while let event = try await conn.nextEvent() {
                        self.publish(topic, event.payload)
                        if !self.wanted(topic) { return }
                    }
                }
                if case .failure(let e) = result { logger.debug("events of \(topic): \(e.message)") }
            }
            try? await Task.sleep(for: .seconds(2))
        }
    }
}

extension WebApp {
    /// GET /events?topics=health+node: Server-Sent Events of those topics, and a comment every
    /// 15 s so that proxies and the browser keep the stream open.
    func events(_ request: Request) -> Response {
        let asked = Set((request.uri.queryParameters.get("topics") ?? "").split(whereSeparator: { $0 == " " || $0 == "," }).map(String.init))
        let topics = asked.intersection(EventRelay.owners.keys)
        guard !topics.isEmpty else {
            return Response(status: .badRequest, headers: [.contentType: "text/plain; charset=utf-8"],
                            body: .init(byteBuffer: ByteBuffer(string: "topics: one or more of \(EventRelay.owners.keys.sorted().joined(separator: ", "))\n")))
        }
        guard let (id, stream) = relay.open(topics: topics) else {
            return Response(status: .serviceUnavailable, headers: [.retryAfter: "10"], body: .init(byteBuffer: ByteBuffer(string: "too many event streams\n")))
        }
        let relay = relay
        let body = ResponseBody { writer in
            defer { relay.close(id) }
            try await writer.write(ByteBuffer(string: ": cm-webd events \(topics.sorted().joined(separator: " "))\nretry: 3000\n\n"))
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    while true {
                        try await Task.sleep(for: .seconds(15))
                        relay.keepalive(id)
                    }
                }
                for await frame in stream { try await writer.write(frame) }
                group.cancelAll()
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-store"], body: body)
    }
}

extension EventRelay {
    func keepalive(_ id: UInt64) {
        _ = state.withLock { $0.clients[id]?.continuation.yield(ByteBuffer(string: ": keepalive\n\n")) }
    }
}
