#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix

/// Client side of the control socket. Scoped: the connection lives for the closure, so it is
/// always closed (`WireClient.withConnection(…) { conn in try await conn.request(…) }`).
public enum WireClient {
    /// Connects, says hello, runs `body`, closes. Connection failures become WireErrors whose
    /// message tells an admin what to do ("cm-healthd is not running: … — start it with …").
    public static func withConnection<Result: Sendable>(
        path: String, daemon: String, peer: String,
        maximumFrameLength: Int = Frame.defaultMaximumLength,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        _ body: (WireConnection) async throws -> Result
    ) async throws -> Result {
        let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        do {
            channel = try await ClientBootstrap(group: group).connect(unixDomainSocketPath: path) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(ByteToMessageHandler(FrameDecoder(maximumLength: maximumFrameLength)))
                    try sync.addHandler(MessageToByteHandler(FrameEncoder()))
                    return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        } catch {
            throw connectError(error, path: path, daemon: daemon)
        }
        return try await channel.executeThenClose { inbound, outbound in
            let connection = WireConnection(inbound: inbound, outbound: outbound, daemon: daemon)
            try await connection.hello(peer: peer)
            return try await body(connection)
        }
    }

    static func connectError(_ error: any Error, path: String, daemon: String) -> WireError {
        let errno: CInt? = (error as? IOError)?.errnoCode
        switch errno {
        case ECONNREFUSED?, ENOENT?:
            let reason = errno == ENOENT ? "no such socket" : "connection refused"
            return WireError(.notRunning, "\(daemon) is not running: \(path): \(reason) — start it with systemctl start \(daemon)")
        case EACCES?, EPERM?:
            return WireError(.permissionDenied, "\(path): permission denied — run as root or as a member of group clustermaker")
        default:
            return WireError(.unavailable, "\(daemon): \(path): \(error)")
        }
    }
}

/// One open control connection. Requests are answered in order; after `subscribe`, `events()`
/// yields the daemon's events. Used by one task at a time, inside `WireClient.withConnection`.
public final class WireConnection {
    private var iterator: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    private let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    private var nextID: UInt64 = 1
    private var pendingEvents: [ReceivedEnvelope] = []
    public let daemon: String
    public private(set) var helloReply: HelloReply?

    init(inbound: NIOAsyncChannelInboundStream<ByteBuffer>, outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>, daemon: String) {
        self.iterator = inbound.makeAsyncIterator()
        self.outbound = outbound
        self.daemon = daemon
    }

    func hello(peer: String) async throws {
        helloReply = try await request(MessageType.hello, Hello(peer: peer), as: HelloReply.self)
    }

    /// Sends one request and waits for its response; an error envelope is thrown as WireError.
    public func request<Request: Encodable & Sendable, Response: Decodable>(
        _ type: String, _ body: Request, as: Response.Type = Response.self
    ) async throws -> Response {
        let id = nextID
        nextID += 1
        do {
            try await outbound.write(ByteBuffer.envelope(EnvelopeHeader(kind: .request, id: id, type: type), body: body))
        } catch {
            // The daemon may have said why before hanging up (a refused peer gets an error frame).
            if let envelope = try? await receiveOrEnd(), envelope.header.kind == .error {
                throw try envelope.body(as: WireError.self)
            }
            throw WireError(.unavailable, "\(daemon) closed the connection: \(error)")
        }
        while true {
            let envelope = try await receive()
            switch envelope.header.kind {
            case .event:
                pendingEvents.append(envelope)
            case .error where envelope.header.id == id || envelope.header.id == 0:
                throw try envelope.body(as: WireError.self)
            case .response where envelope.header.id == id:
                return try envelope.body(as: Response.self)
            default:
                throw WireError(.badEnvelope, "\(daemon) answered request \(id) with \(envelope.header.kind.rawValue) \(envelope.header.id)")
            }
        }
    }

    /// Subscribes to `topics`; read them with `nextEvent()`.
    public func subscribe(topics: [String]) async throws {
        _ = try await request(MessageType.subscribe, Subscribe(topics: topics), as: SubscribeReply.self)
    }

    /// The next event, or nil when the daemon closed the connection.
    public func nextEvent() async throws -> ReceivedEnvelope? {
        if !pendingEvents.isEmpty { return pendingEvents.removeFirst() }
        while true {
            guard let envelope = try await receiveOrEnd() else { return nil }
            switch envelope.header.kind {
            case .event: return envelope
            case .error: throw try envelope.body(as: WireError.self)
            default: continue
            }
        }
    }

    private func receive() async throws -> ReceivedEnvelope {
        guard let envelope = try await receiveOrEnd() else {
            throw WireError(.unavailable, "\(daemon) closed the connection")
        }
        return envelope
    }

    private func receiveOrEnd() async throws -> ReceivedEnvelope? {
        guard let payload = try await iterator.next() else { return nil }
        return try ReceivedEnvelope(payload: payload)
    }
}
