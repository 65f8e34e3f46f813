import CMConfig
import CMTypes
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The HTTP boot server: per-node iPXE scripts and image files (kernel, initrd), with Range
/// requests, sent with sendfile(2) through NIO's FileRegion.
///
///   GET /boot/MAC.ipxe                the node's script (MAC as 52-54-00-77-00-01)
///   GET /boot/MAC/IMAGE/FILE          a file of the image the script chose for that node
///   GET /images/IMAGE/FILE            a file of an image, for anybody
final class HTTPBootServer: Sendable {
    /// An address to listen on. `freebind` (IP_FREEBIND) lets the socket be bound to an
    /// address this host does not hold yet: the virtual IP that cm-vipd moves between masters.
    struct Listener: Sendable, Equatable, CustomStringConvertible {
        var address: IPv4Address
        var freebind: Bool
        var description: String { "\(address)" }
    }

    let service: PXEService
    let channels: [any Channel]
    let connections: HTTPConnectionTable

    /// The boot interface's addresses: this master's, and the boot address when that differs
    /// (the masters' virtual IP). Not 0.0.0.0: the images are for the boot network only.
    static func listeners(_ config: PxedConfig.Daemon) -> [Listener] {
        var l = [Listener(address: config.serverAddress, freebind: false)]
        if config.serverAddress.rawValue != 0, config.advertisedAddress != config.serverAddress {
            l.append(Listener(address: config.advertisedAddress, freebind: true))
        }
        return l
    }

    init(service: PXEService, listeners: [Listener], port: Int, group: MultiThreadedEventLoopGroup) async throws {
        self.service = service
        let connections = HTTPConnectionTable()
        self.connections = connections
        var channels: [any Channel] = []
        do {
            for listener in listeners {
                var bootstrap = ServerBootstrap(group: group)
                    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                    .childChannelInitializer { channel in Self.initialize(channel, service: service, connections: connections) }
                if listener.freebind {
                    bootstrap = bootstrap.serverChannelOption(
                        ChannelOptions.Types.SocketOption(level: .ip, name: .init(rawValue: CInt(IP_FREEBIND))), value: 1)
                }
                channels.append(try await bootstrap.bind(host: "\(listener.address)", port: port).get())
            }
        } catch {
            for c in channels { try? await c.close() }
            throw error
        }
        self.channels = channels
    }

    /// The ports listened on (as many as listeners): the tests bind port 0.
    var ports: [Int] { channels.compactMap { $0.localAddress?.port } }

    func close() async { for c in channels { try? await c.close() } }

    private struct Refused: Error {}

    /// Admits an accepted connection under the caps, or refuses it by failing the
    /// initializer (NIO then closes it before it is registered: no read, no response).
    private static func initialize(_ channel: any Channel, service: PXEService, connections: HTTPConnectionTable) -> EventLoopFuture<Void> {
        let limits = service.config.pxed.http
        let client = channel.remoteAddress?.ipAddress.flatMap(IPv4Address.init) ?? IPv4Address(rawValue: 0)
        switch connections.admit(client, limits: limits, now: .now()) {
        case .refused(let reason, let log):
            service.counters.add("http_refused_connections")
            if let log {
                // One line a minute at most: a flood must not flood the journal as well.
                service.logger.notice("HTTP connection from \(client) refused: \(reason)\(log > 0 ? " (and \(log) more refused since the last such message)" : "")")
            }
            return channel.eventLoop.makeFailedFuture(Refused())
        case .admitted:
            break
        }
        channel.closeFuture.whenComplete { _ in connections.release(client) }
        return channel.eventLoop.makeCompletedFuture {
            let handler = HTTPBootHandler(service: service, timeouts: .init(limits))
            let sync = channel.pipeline.syncOperations
            try sync.addHandler(HTTPBytesObserver(connection: handler))
            try sync.configureHTTPServerPipeline(withErrorHandling: true)
            try sync.addHandler(handler)
        }
    }
}

/// Open connections, all together and per client address; shared by the event loops.
final class HTTPConnectionTable: Sendable {
    enum Admission: Equatable {
        case admitted
        /// `log`: nil while refusal messages are held back, else how many were held back.
        case refused(String, log: Int?)
    }

    struct Counts {
        var total = 0
        var perClient: [IPv4Address: Int] = [:]
        var lastLogged: NIODeadline?
        var unlogged = 0
    }

    private let counts = Mutex(Counts())

    var total: Int { counts.withLock { $0.total } }

    func admit(_ client: IPv4Address, limits: PxedConfig.HTTPLimits, now: NIODeadline) -> Admission {
        counts.withLock { c in
            let reason: String
            if c.total >= limits.maxConnections {
                reason = "\(c.total) connections open (http_max_connections)"
            } else if c.perClient[client, default: 0] >= limits.maxConnectionsPerClient {
                reason = "\(c.perClient[client, default: 0]) connections open from that address (http_max_connections_per_client)"
            } else {
                c.total += 1
                c.perClient[client, default: 0] += 1
                return .admitted
            }
            if let last = c.lastLogged, now - last < .minutes(1) {
                c.unlogged += 1
                return .refused(reason, log: nil)
            }
            defer { c.lastLogged = now; c.unlogged = 0 }
            return .refused(reason, log: c.unlogged)
        }
    }

    func release(_ client: IPv4Address) {
        counts.withLock { c in
            c.total -= 1
            let n = c.perClient[client, default: 1] - 1
            c.perClient[client] = n > 0 ? n : nil
        }
    }
}

/// First in the pipeline, before the HTTP decoder: tells the connection that bytes came in,
/// which starts the head timeout of a request after an idle keep-alive pause.
final class HTTPBytesObserver: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    let connection: HTTPBootHandler
    init(connection: HTTPBootHandler) { self.connection = connection }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        connection.bytesReceived()
        context.fireChannelRead(data)
    }
}

/// Serves one connection's requests, one at a time: it asks an HTTPConnectionMachine what to
/// do and does it (serve, read, arm the timer, close).
final class HTTPBootHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// A file goes out in regions of this size, each reporting its completion: progress for
    /// the send timeout, so a slow client on a large initrd is not taken for a stuck one.
    static let sendChunk = 1 << 20

    let service: PXEService
    private let timeouts: HTTPConnectionMachine.Timeouts
    private var machine: HTTPConnectionMachine?
    private var context: ChannelHandlerContext?
    private var timer: Scheduled<Void>?
    /// Events that arrive while actions are being performed (a write's promise completes
    /// inside the flush): handled in order after them, not re-entrantly, so a long pipeline
    /// of small responses does not recurse.
    private var pending = CircularBuffer<HTTPConnectionMachine.Event>()
    private var feeding = false

    init(service: PXEService, timeouts: HTTPConnectionMachine.Timeouts) {
        self.service = service
        self.timeouts = timeouts
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { start() }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        start()
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    private func start() {
        guard machine == nil, let context else { return }
        var m = HTTPConnectionMachine(timeouts: timeouts, now: .now())
        let actions = m.start()
        machine = m
        perform(actions, context)
    }

    func bytesReceived() { feed(.bytesReceived(.now())) }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h): feed(.requestHead(h))
        case .body: break
        case .end: feed(.requestEnd(.now()))
        }
    }

    func read(context: ChannelHandlerContext) { feed(.read) }

    private func feed(_ event: HTTPConnectionMachine.Event) {
        pending.append(event)
        guard !feeding else { return }
        feeding = true
        defer { feeding = false }
        while let e = pending.popFirst() {
            guard let context, var m = machine else {
                // Not started (no channelActive yet): reads pass, nothing else can happen.
                if case .read = e { self.context?.read() }
                continue
            }
            let actions = m.handle(e)
            machine = m
            perform(actions, context)
        }
    }

    private func perform(_ actions: [HTTPConnectionMachine.Action], _ context: ChannelHandlerContext) {
        for action in actions {
            switch action {
            case .serve(let request):
                respond(context: context, to: request)
            case .read:
                context.read()
            case .scheduleTimer(let deadline):
                timer?.cancel()
                timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [weak self] in
                    self?.feed(.timer(.now()))
                }
            case .close(let timeout):
                timer?.cancel()
                timer = nil
                if let timeout {
                    service.counters.add("http_timeouts")
                    let limit = switch timeout {
                    case .head: timeouts.head
                    case .idle: timeouts.idle
                    case .send: timeouts.send
                    }
                    service.logger.info("HTTP connection from \(context.remoteAddress?.ipAddress ?? "?") closed: \(timeout.rawValue) timeout (\(Self.format(limit)))")
                }
                context.close(promise: nil)
            }
        }
    }

    static func format(_ t: TimeAmount) -> String {
        t.nanoseconds % 1_000_000_000 == 0 ? "\(t.nanoseconds / 1_000_000_000) s" : "\(t.nanoseconds / 1_000_000) ms"
    }

    /// The response's last part is written: the machine learns when it has been sent.
    private func finish(_ context: ChannelHandlerContext, keepAlive: Bool, then: @escaping (Bool) -> Void = { _ in }) {
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { [weak self] result in
            let sent = if case .success = result { true } else { false }
            then(sent)
            self?.feed(.responseSent(.now(), keepAlive: keepAlive && sent))
        }
    }

    private func respond(context: ChannelHandlerContext, to request: HTTPRequestHead) {
        service.counters.add("http_requests")
        let client = context.remoteAddress?.ipAddress.flatMap(IPv4Address.init) ?? IPv4Address(rawValue: 0)
        guard request.method == .GET || request.method == .HEAD else {
            return simple(context, request, .methodNotAllowed, "only GET and HEAD\n", extra: [("Allow", "GET, HEAD")])
        }
        let path = request.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
        // Components are percent-decoded after the split: iPXE writes "base@2" as "base%402",
        // and a decoded "/" stays inside its component (where the name checks refuse it).
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map { String($0).removingPercentEncoding ?? String($0) }
        switch parts.count {
        case 2 where parts[0] == "boot" && parts[1].hasSuffix(".ipxe"):
            guard let mac = BootPlan.mac(urlForm: parts[1].dropLast(5)) else {
                return simple(context, request, .notFound, "\"\(parts[1])\" does not name a MAC address (52-54-00-77-00-01.ipxe)\n")
            }
            let script = service.bootScript(mac: mac, from: client, record: request.method == .GET)
            service.counters.add("http_scripts")
            return simple(context, request, .ok, script, contentType: "text/plain; charset=utf-8")
        case 4 where parts[0] == "boot":
            guard let mac = BootPlan.mac(urlForm: parts[1]) else { return simple(context, request, .notFound, "no such node address \"\(parts[1])\"\n") }
            sendFile(context, request, image: parts[2], file: parts[3], node: mac)
        case 3 where parts[0] == "images":
            sendFile(context, request, image: parts[1], file: parts[2], node: nil)
        case 3 where parts[0] == "node" && parts[2] == "hosts":
            simple(context, request, .ok, service.hostsFile(), contentType: "text/plain; charset=utf-8")
        case 3 where parts[0] == "node" && parts[2] == "ssh_host_ed25519_key":
            guard let mac = BootPlan.mac(urlForm: parts[1]) else { return simple(context, request, .notFound, "no such node address \"\(parts[1])\"\n") }
            switch service.hostKey(mac: mac, client: client) {
            case .success(let file):
                guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { return simple(context, request, .internalServerError, "cannot read the key\n") }
                service.counters.add("http_host_keys")
                simple(context, request, .ok, text, contentType: "application/octet-stream")
            case .failure(let refusal):
                service.counters.add("http_refused")
                service.logger.notice("SSH host key of \(mac) refused to \(client): \(refusal.reason)")
                simple(context, request, .forbidden, "refused: \(refusal.reason)\n")
            }
        default:
            simple(context, request, .notFound, "not found: \(path) (cm-pxed serves /boot/MAC.ipxe, /boot/MAC/IMAGE/FILE, /images/IMAGE/FILE, /node/MAC/hosts, /node/MAC/ssh_host_ed25519_key)\n")
        }
    }

    private func sendFile(_ context: ChannelHandlerContext, _ request: HTTPRequestHead, image: String, file: String, node: MACAddress?) {
        guard BootPlan.isServableName(file), let dir = service.imageDirectory(image, config: service.config) else {
            service.counters.add("http_refused")
            return simple(context, request, .notFound, "no such image file \(image)/\(file)\n")
        }
        let path = "\(dir)/\(file)"
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        var st = stat()
        guard fd >= 0, fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            if fd >= 0 { Glibc.close(fd) }
            return simple(context, request, .notFound, "no such image file \(image)/\(file)\n")
        }
        let size = Int(st.st_size)
        var status = HTTPResponseStatus.ok
        var range = 0..<size
        var headers = HTTPHeaders([("Content-Type", "application/octet-stream"), ("Accept-Ranges", "bytes"),
                                   ("Last-Modified", Self.httpDate(st.st_mtim.tv_sec))])
        if let spec = request.headers.first(name: "Range") {
            switch Self.byteRange(spec, size: size) {
            case .none: break
            case .some(.none):
                Glibc.close(fd)
                return simple(context, request, .rangeNotSatisfiable, "range \(spec) is outside the file's \(size) bytes\n",
                              extra: [("Content-Range", "bytes */\(size)")])
            case .some(.some(let r)):
                status = .partialContent
                range = r
                headers.add(name: "Content-Range", value: "bytes \(r.lowerBound)-\(r.upperBound - 1)/\(size)")
            }
        }
        headers.add(name: "Content-Length", value: String(range.count))
        if !request.isKeepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: status, headers: headers))), promise: nil)
        let handle = NIOFileHandle(_deprecatedTakingOwnershipOfDescriptor: fd)
        if request.method == .GET, !range.isEmpty {
            var offset = range.lowerBound
            while offset < range.upperBound {
                let end = min(offset + Self.sendChunk, range.upperBound)
                let region = FileRegion(fileHandle: handle, readerIndex: offset, endIndex: end)
                let promise = context.eventLoop.makePromise(of: Void.self)
                promise.futureResult.assumeIsolated().whenSuccess { [weak self] _ in self?.feed(.responseProgress(.now())) }
                context.write(wrapOutboundOut(.body(.fileRegion(region))), promise: promise)
                offset = end
            }
        }
        let service = self.service, complete = range.upperBound == size && request.method == .GET
        finish(context, keepAlive: request.isKeepAlive) { sent in
            try? handle.close()
            if sent {
                service.counters.add("http_files")
                if complete, let node { service.fileSent(mac: node, image: image, file: file) }
            }
        }
    }

    private func simple(_ context: ChannelHandlerContext, _ request: HTTPRequestHead, _ status: HTTPResponseStatus, _ body: String,
                        contentType: String = "text/plain; charset=utf-8", extra: [(String, String)] = []) {
        if status.code >= 400 { service.counters.add("http_errors") }
        var headers = HTTPHeaders([("Content-Type", contentType), ("Content-Length", String(body.utf8.count))] + extra)
        if !request.isKeepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: status, headers: headers))), promise: nil)
        if request.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        }
        finish(context, keepAlive: request.isKeepAlive)
    }

    /// RFC 9110 14.1.2, one range: nil when the header is not a single byte range (serve the
    /// whole file); .some(nil) when it cannot be satisfied.
    static func byteRange(_ spec: String, size: Int) -> Range<Int>?? {
        guard spec.hasPrefix("bytes="), !spec.contains(",") else { return nil }
        let parts = spec.dropFirst(6).split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { return nil }
        let a = parts[0].trimmingCharacters(in: .whitespaces), b = parts[1].trimmingCharacters(in: .whitespaces)
        if a.isEmpty {
            guard let n = Int(b), n >= 0 else { return nil }
            guard n > 0, size > 0 else { return .some(nil) }
            return .some(max(0, size - n)..<size)
        }
        guard let first = Int(a), first >= 0 else { return nil }
        guard first < size else { return .some(nil) }
        if b.isEmpty { return .some(first..<size) }
        guard let last = Int(b), last >= first else { return nil }
        return .some(first..<min(last + 1, size))
    }

    static func httpDate(_ seconds: Int) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return f.string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
    }
}
