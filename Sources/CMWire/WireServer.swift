#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// The control-socket server every daemon runs: frames, envelopes, hello, peer checks,
/// request routing and event subscriptions, over a Unix-domain stream socket.
public final class WireServer: Sendable {
    /// Where the listening socket comes from.
    public enum Listener: Sendable, CustomStringConvertible {
        /// Bind this path ourselves (no systemd); a stale socket file is replaced.
        case path(String)
        /// An already listening socket handed over by systemd (LISTEN_FDS).
        case descriptor(CInt, path: String)

        public var description: String {
            switch self {
            case .path(let p): return p
            case .descriptor(let fd, let p): return "\(p) (fd \(fd) from systemd)"
            }
        }
    }

    public struct Counters: Sendable, Equatable {
        public var connections: Int
        public var refusedPeers: Int
        public var badFrames: Int
        public var requests: Int
        /// Connections turned away because `maximumConnections` were already open.
        public var refusedOverLimit: Int
        /// Connections closed because no hello came within `helloTimeout`.
        public var helloTimeouts: Int
    }

    /// Connections served at once. The suite's own clients (cmctl, followers, subscribers) need a
    /// handful; the limit bounds the descriptors and tasks a runaway or hostile local client can
    /// take, well below the units' LimitNOFILE.
    public static let defaultMaximumConnections = 256
    /// From accept to a successful hello. A client that connects and says nothing, or trickles a
    /// frame byte by byte, would otherwise hold its connection (and a place under the limit) for
    /// ever. After hello no deadline applies: a subscription lives as long as its subscriber.
    public static let defaultHelloTimeout: Duration = .seconds(5)

    public let daemon: String
    public let version: String
    public let events: EventHub
    let router: WireRouter
    let policy: PeerPolicy
    let maximumFrameLength: Int
    let maximumConnections: Int
    let helloTimeout: Duration
    let logger: Logger
    let statusProvider: @Sendable () -> DaemonStatus

    private let connections = Atomic<Int>(0)
    private let refusedPeers = Atomic<Int>(0)
    private let badFrames = Atomic<Int>(0)
    private let requests = Atomic<Int>(0)
    private let refusedOverLimit = Atomic<Int>(0)
    private let helloTimeouts = Atomic<Int>(0)
    private let openConnections = Atomic<Int>(0)

    public init(daemon: String, version: String, router: WireRouter, events: EventHub = EventHub(),
                policy: PeerPolicy = PeerPolicy(), maximumFrameLength: Int = Frame.defaultMaximumLength,
                maximumConnections: Int = WireServer.defaultMaximumConnections,
                helloTimeout: Duration = WireServer.defaultHelloTimeout,
                logger: Logger, status: @escaping @Sendable () -> DaemonStatus) {
        self.daemon = daemon
        self.version = version
        self.router = router
        self.events = events
        self.policy = policy
        self.maximumFrameLength = maximumFrameLength
        self.maximumConnections = max(1, maximumConnections)
        self.helloTimeout = helloTimeout
        self.logger = logger
        self.statusProvider = status
    }

    public var counters: Counters {
        Counters(connections: connections.load(ordering: .relaxed), refusedPeers: refusedPeers.load(ordering: .relaxed),
                 badFrames: badFrames.load(ordering: .relaxed), requests: requests.load(ordering: .relaxed),
                 refusedOverLimit: refusedOverLimit.load(ordering: .relaxed), helloTimeouts: helloTimeouts.load(ordering: .relaxed))
    }

    typealias Connection = NIOAsyncChannel<ByteBuffer, ByteBuffer>

    /// Serves until the surrounding task is cancelled. `onListening` runs once the socket
    /// accepts connections (the daemon sends READY=1 from there).
    public func run(listener: Listener, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                    onListening: @Sendable () -> Void = {}) async throws {
        let maximumFrameLength = self.maximumFrameLength
        let initializer: @Sendable (any Channel) -> EventLoopFuture<(Connection, PeerCredentials?)> = { channel in
            Self.peerCredentials(of: channel).flatMapThrowing { credentials in
                let sync = channel.pipeline.syncOperations
                try sync.addHandler(ByteToMessageHandler(FrameDecoder(maximumLength: maximumFrameLength)))
                try sync.addHandler(MessageToByteHandler(FrameEncoder()))
                return (try Connection(wrappingChannelSynchronously: channel), credentials)
            }
        }
        let bootstrap = ServerBootstrap(group: group).serverChannelOption(.backlog, value: 128)
        let server: NIOAsyncChannel<(Connection, PeerCredentials?), Never>
        switch listener {
        case .path(let path):
            server = try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true, childChannelInitializer: initializer)
        case .descriptor(let fd, _):
            server = try await bootstrap.bind(fd, childChannelInitializer: initializer)
        }
        logger.info("listening on \(listener)")
        onListening()
        try await server.executeThenClose { inbound in
            try await withThrowingDiscardingTaskGroup { tasks in
                for try await (connection, credentials) in inbound {
                    // Only this loop adds, so no other accept can slip in between the check and the add.
                    guard openConnections.load(ordering: .relaxed) < maximumConnections else {
                        refusedOverLimit.add(1, ordering: .relaxed)
                        logger.warning("refused connection from \(credentials.map(String.init(describing:)) ?? "unknown peer"): already \(maximumConnections) connections open, the limit")
                        tasks.addTask { await self.refuseOverLimit(connection) }
                        continue
                    }
                    openConnections.add(1, ordering: .relaxed)
                    tasks.addTask {
                        defer { self.openConnections.subtract(1, ordering: .relaxed) }
                        await self.serve(connection, credentials: credentials)
                    }
                }
            }
        }
    }

    private static func peerCredentials(of channel: any Channel) -> EventLoopFuture<PeerCredentials?> {
        guard let provider = channel as? any SocketOptionProvider else { return channel.eventLoop.makeSucceededFuture(nil) }
        let future: EventLoopFuture<RawPeerCredentials> = provider.unsafeGetSocketOption(level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED))
        return future.flatMap { raw in
            // Without the group list (a kernel before 4.13) root, our own user and the primary
            // group still get in; only membership through a supplementary group is lost.
            peerGroups(of: provider, eventLoop: channel.eventLoop).recover { _ in [] }.map { groups -> PeerCredentials? in
                PeerCredentials(pid: raw.pid, uid: raw.uid, gid: raw.gid, groups: groups)
            }
        }.recover { _ in nil }
    }

    /// SO_PEERGROUPS (socket(7), Linux 4.13); the Glibc module does not export it.
    static let soPeerGroups: CInt = 59

    /// The peer's supplementary groups, as the kernel recorded them at connect(2). A short buffer
    /// is refused with ERANGE; NIO does not hand back the length the kernel asks for, so the
    /// retry takes the most there can be. Most peers have a few groups and never get there.
    private static func peerGroups(of provider: any SocketOptionProvider, eventLoop: any EventLoop) -> EventLoopFuture<[UInt32]> {
        let level = SocketOptionLevel(SOL_SOCKET), name = SocketOptionName(soPeerGroups)
        let few: EventLoopFuture<InlineArray<64, UInt32>> = provider.unsafeGetSocketOption(level: level, name: name)
        return few.map { buffer in PeerCredentials.supplementaryGroups(from: buffer.indices.map { buffer[$0] }) }.flatMapError { error in
            guard (error as? IOError)?.errnoCode == ERANGE else { return eventLoop.makeFailedFuture(error) }
            // 65536 is Linux's NGROUPS_MAX: no process has more (256 KiB, rarely asked for).
            let all: EventLoopFuture<InlineArray<65536, UInt32>> = provider.unsafeGetSocketOption(level: level, name: name)
            return all.map { buffer in PeerCredentials.supplementaryGroups(from: buffer.indices.map { buffer[$0] }) }
        }
    }

    /// Tells a connection beyond `maximumConnections` why and closes it at once. No linger as for a
    /// refused peer: that would keep open the very connections the limit is against, and
    /// WireConnection reads this frame even when its hello meets the closed socket.
    private func refuseOverLimit(_ connection: Connection) async {
        let error = WireError(.unavailable, "\(daemon) is busy: \(maximumConnections) connections open, the most it serves at once; try again later")
        try? await connection.executeThenClose { _, outbound in
            try await outbound.write(Self.errorPayload(error, id: 0, type: MessageType.hello))
        }
    }

    private func serve(_ connection: Connection, credentials: PeerCredentials?) async {
        connections.add(1, ordering: .relaxed)
        let channel = connection.channel
        do {
            try await connection.executeThenClose { inbound, outbound in
                guard let credentials, policy.permits(credentials) else {
                    refusedPeers.add(1, ordering: .relaxed)
                    logger.warning("refused connection from \(credentials.map(String.init(describing:)) ?? "unknown peer"): not root and not in group \(policy.groupName)")
                    let error = WireError(.permissionDenied, "permission denied: \(daemon) accepts only root and members of group \(policy.groupName)")
                    try? await outbound.write(Self.errorPayload(error, id: 0, type: MessageType.hello))
                    await Self.linger(inbound)
                    return
                }
                // Armed after the peer check, which takes no time, so it runs from accept; a
                // refused peer has its own shorter linger.
                let helloDeadline = channel.eventLoop.scheduleTask(in: TimeAmount(helloTimeout)) { [self] in
                    helloTimeouts.add(1, ordering: .relaxed)
                    logger.warning("closing connection from \(credentials): no hello within \(helloTimeout)")
                    let error = WireError(.helloRequired, "no hello within \(helloTimeout); \(daemon) closes the connection")
                    channel.writeAndFlush(Self.errorPayload(error, id: 0, type: "error")).whenComplete { _ in channel.close(promise: nil) }
                }
                defer { helloDeadline.cancel() }
                try await withThrowingTaskGroup(of: Void.self) { tasks in
                    defer { tasks.cancelAll() }
                    try await self.handleRequests(inbound, outbound, credentials: credentials, helloDeadline: helloDeadline, tasks: &tasks)
                }
            }
        } catch is CancellationError {
        } catch {
            logger.debug("connection ended: \(error)")
        }
    }

    /// Keeps a refused connection open until the peer's first frame or its close (at most a
    /// second), so a client that writes hello before reading gets our error frame rather than EPIPE.
    private static func linger(_ inbound: NIOAsyncChannelInboundStream<ByteBuffer>) async {
        await withTaskGroup(of: Void.self) { tasks in
            tasks.addTask {
                var frames = inbound.makeAsyncIterator()
                _ = try? await frames.next()
            }
            tasks.addTask { try? await Task.sleep(for: .seconds(1)) }
            await tasks.next()
            tasks.cancelAll()
        }
    }

    private func handleRequests(_ inbound: NIOAsyncChannelInboundStream<ByteBuffer>, _ outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>,
                                credentials: PeerCredentials, helloDeadline: Scheduled<Void>,
                                tasks: inout ThrowingTaskGroup<Void, any Error>) async throws {
        var peerName: String?
        var subscription: EventHub.Subscription?
        defer { if let subscription { events.unsubscribe(subscription.id) } }
        do {
            for try await payload in inbound {
                let envelope: ReceivedEnvelope
                do {
                    envelope = try ReceivedEnvelope(payload: payload)
                } catch {
                    // A frame we cannot read means the peer is confused: tell it why, then hang up.
                    badFrames.add(1, ordering: .relaxed)
                    logger.warning("bad envelope from \(credentials): \(error.message)")
                    try? await outbound.write(Self.errorPayload(error, id: 0, type: "error"))
                    return
                }
                let header = envelope.header
                guard header.kind == .request else {
                    try await outbound.write(Self.errorPayload(WireError(.badEnvelope, "expected a request, got \(header.kind.rawValue)"), id: header.id, type: header.type))
                    continue
                }
                requests.add(1, ordering: .relaxed)
                if header.type == MessageType.hello {
                    do {
                        let hello = try envelope.body(as: Hello.self)
                        guard hello.protocolVersion == WireProtocol.version else {
                            throw WireError(.versionMismatch, "protocol version \(hello.protocolVersion) not supported (\(daemon) speaks \(WireProtocol.version))")
                        }
                        peerName = hello.peer
                        helloDeadline.cancel()
                        try await outbound.write(ByteBuffer.envelope(EnvelopeHeader(kind: .response, id: header.id, type: header.type),
                                                                     body: HelloReply(daemon: daemon, version: version)))
                    } catch let error as WireError {
                        try await outbound.write(Self.errorPayload(error, id: header.id, type: header.type))
                    }
                    continue
                }
                guard let peerName else {
                    try await outbound.write(Self.errorPayload(WireError(.helloRequired, "send hello first"), id: header.id, type: header.type))
                    continue
                }
                if header.type == MessageType.subscribe, subscription == nil {
                    let topics: [String]
                    do {
                        topics = try envelope.body(as: Subscribe.self).topics
                    } catch {
                        try await outbound.write(Self.errorPayload(error, id: header.id, type: header.type))
                        continue
                    }
                    let sub = events.subscribe(topics: topics)
                    subscription = sub
                    try await outbound.write(ByteBuffer.envelope(EnvelopeHeader(kind: .response, id: header.id, type: header.type), body: SubscribeReply(topics: topics)))
                    tasks.addTask {
                        for await event in sub.events { try await outbound.write(event) }
                    }
                    continue
                }
                try await outbound.write(await respond(to: envelope, context: RequestContext(peer: credentials, peerName: peerName)))
            }
        } catch let error as WireError {
            badFrames.add(1, ordering: .relaxed)
            logger.warning("closing connection from \(credentials): \(error.message)")
            try? await outbound.write(Self.errorPayload(error, id: 0, type: "error"))
        }
    }

    private func respond(to envelope: ReceivedEnvelope, context: RequestContext) async -> ByteBuffer {
        let header = envelope.header
        do {
            if header.type == MessageType.status {
                return try Self.encode(EnvelopeHeader(kind: .response, id: header.id, type: header.type), statusProvider())
            }
            guard let handler = router.handler(for: header.type) else {
                throw WireError(.unknownType, "\(daemon) does not know message type \"\(header.type)\"")
            }
            return try await handler(envelope, context)
        } catch let error as WireError {
            return Self.errorPayload(error, id: header.id, type: header.type)
        } catch {
            logger.error("\(header.type) failed: \(error)")
            return Self.errorPayload(WireError(.internal, "\(header.type) failed: \(error)"), id: header.id, type: header.type)
        }
    }

    private static func encode<Body: Encodable & Sendable>(_ header: EnvelopeHeader, _ body: Body) throws(WireError) -> ByteBuffer {
        do { return try ByteBuffer.envelope(header, body: body) } catch { throw WireError(.internal, "cannot encode \(header.type): \(error)") }
    }

    static func errorPayload(_ error: WireError, id: UInt64, type: String) -> ByteBuffer {
        // Encoding a WireError cannot fail: two strings.
        (try? ByteBuffer.envelope(EnvelopeHeader(kind: .error, id: id, type: type), body: error)) ?? ByteBuffer()
    }
}

/// Linux `struct ucred` (pid_t, uid_t, gid_t), which Glibc's module map hides behind _GNU_SOURCE.
struct RawPeerCredentials: Sendable {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}
