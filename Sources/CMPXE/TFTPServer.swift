import CMTypes
import Foundation
import Logging
import NIOCore
import NIOPosix
import PXEProtocols
#if canImport(Glibc)
import Glibc
#endif

/// Read-only TFTP server rooted at the boot directory (RFC 1350, options RFC 2347-2349 and
/// windowsize RFC 7440). Everything runs on one NIO event loop: the request channel on the
/// TFTP port and one datagram channel per transfer (its own ephemeral port, the TID of RFC
/// 1350 section 4). Each transfer is a `TFTPTransfer` state machine; its handler only performs
/// what the machine answers. A duplicate request from a running transfer's endpoint is
/// dropped, and transfers are capped per client address and in all.
final class TFTPServer: Sendable {
    struct Settings: Sendable {
        var root: String
        var port: UInt16
        var maxBlockSize: Int
        var maxWindowSize: Int
        var retries: Int
        var maxTransfers = 512
        var maxPerClient = 8
        /// Larger `timeout` options are not acknowledged; back-off stops growing here.
        var maxTimeoutSeconds = 5
        /// However a transfer progresses, it ends after this.
        var lifetime: Duration = .seconds(600)
        var address = IPv4Address(rawValue: 0)
    }

    /// What the request handler and the transfers share; its table lives on the loop.
    final class Engine: Sendable {
        let settings: Settings
        let counters: Counters
        let logger: Logger
        let realRoot: String
        let loop: any EventLoop
        let table: NIOLoopBound<TransferTable>
        /// Where transfer channels bind: the server's address, a fresh port each.
        let local: SocketAddress

        init(settings: Settings, counters: Counters, logger: Logger, realRoot: String, loop: any EventLoop,
             table: NIOLoopBound<TransferTable>, local: SocketAddress) {
            self.local = local
            self.settings = settings
            self.counters = counters
            self.logger = logger
            self.realRoot = realRoot
            self.loop = loop
            self.table = table
        }
    }

    let engine: Engine
    private let group: MultiThreadedEventLoopGroup
    private let requestChannel: any Channel

    init(settings: Settings, counters: Counters, logger: Logger) async throws {
        guard let real = realpath(settings.root, nil) else { throw SystemError("TFTP root \(settings.root)") }
        let realRoot = String(cString: real)
        free(real)
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        do {
            let table = try await loop.submit { NIOLoopBound(TransferTable(), eventLoop: loop) }.get()
            let engine = Engine(settings: settings, counters: counters, logger: logger, realRoot: realRoot, loop: loop, table: table,
                                local: try SocketAddress(ipAddress: "\(settings.address)", port: 0))
            self.engine = engine
            requestChannel = try await DatagramBootstrap(group: loop)
                .channelOption(.socketOption(.so_reuseaddr), value: 1)
                // Room for a burst of requests (the kernel caps it at net.core.rmem_max).
                .channelOption(.socketOption(.so_rcvbuf), value: 1 << 20)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(RequestHandler(engine: engine)) }
                }
                .bind(to: SocketAddress(ipAddress: "\(settings.address)", port: Int(settings.port))).get()
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    var port: UInt16 { UInt16(requestChannel.localAddress?.port ?? 0) }

    /// Closes the request channel and every transfer (the loop's channels close with it).
    func stop() async {
        try? await requestChannel.close()
        try? await group.shutdownGracefully()
    }

    struct Load: Sendable {
        var active: Int
        var peak: Int
        var peakPerAddress: Int
    }

    /// Transfers running now and the most there ever were, for tests and status.
    func load() async -> Load {
        let table = engine.table
        return (try? await engine.loop.submit { Load(active: table.value.transfers.count, peak: table.value.peak, peakPerAddress: table.value.peakPerAddress) }.get())
            ?? Load(active: 0, peak: 0, peakPerAddress: 0)
    }
}

/// The running transfers by client endpoint, and how many each address has. Loop-bound.
final class TransferTable {
    var transfers: [IPv4Endpoint: Void] = [:]
    var perAddress: [IPv4Address: Int] = [:]
    var peak = 0
    var peakPerAddress = 0
    var busyLog = LogLimiter()
    var refusalLog = LogLimiter()
    var failureLog = LogLimiter()

    func reserve(_ client: IPv4Endpoint) {
        transfers[client] = ()
        perAddress[client.address, default: 0] += 1
        peak = max(peak, transfers.count)
        peakPerAddress = max(peakPerAddress, perAddress[client.address] ?? 0)
    }

    func release(_ client: IPv4Endpoint) {
        guard transfers.removeValue(forKey: client) != nil else { return }
        let n = (perAddress[client.address] ?? 1) - 1
        perAddress[client.address] = n > 0 ? n : nil
    }
}

/// At most one log line a second for a kind of event; the others are counted and said with
/// the next line. A flood is counted in full (the counters) but logged in a trickle.
struct LogLimiter {
    private var last: ContinuousClock.Instant?
    private var suppressed = 0

    /// nil: stay quiet; otherwise how many were left unsaid since the last line.
    mutating func allow(now: ContinuousClock.Instant) -> Int? {
        if let last, last.duration(to: now) < .seconds(1) {
            suppressed += 1
            return nil
        }
        last = now
        defer { suppressed = 0 }
        return suppressed
    }
}

/// A file descriptor closed when the last holder lets go.
final class OpenFile: Sendable {
    let fd: Int32
    let size: Int
    init(fd: Int32, size: Int) {
        self.fd = fd
        self.size = size
    }
    deinit { close(fd) }
}

struct TFTPRefusal: Error {
    var code: TFTPErrorCode
    var why: String
}

extension IPv4Endpoint {
    init?(_ address: SocketAddress) {
        guard case .v4(let a) = address else { return nil }
        self.init(address: IPv4Address(rawValue: UInt32(bigEndian: a.address.sin_addr.s_addr)), port: UInt16(bigEndian: a.address.sin_port))
    }
}

extension TFTPServer.Engine {
    /// The file under the root `requested` names, or why not. Symlinks are followed only when
    /// they end inside the root.
    func resolve(_ requested: String) -> Result<String, TFTPRefusal> {
        let parts: [String]
        do { parts = try TFTPPath.components(of: requested) } catch { return .failure(.init(code: .accessViolation, why: "\(error)")) }
        let candidate = realRoot + "/" + parts.joined(separator: "/")
        guard let real = realpath(candidate, nil) else {
            return .failure(.init(code: .fileNotFound, why: errno == ENOENT ? "no such file" : String(cString: strerror(errno))))
        }
        let resolved = String(cString: real)
        free(real)
        guard resolved.hasPrefix(realRoot + "/") else { return .failure(.init(code: .accessViolation, why: "leads outside the boot directory (symlink)")) }
        return .success(resolved)
    }

    /// Opens the file a request names, or says why not.
    func open(_ requested: String) -> Result<OpenFile, TFTPRefusal> {
        let path: String
        switch resolve(requested) {
        case .failure(let refusal): return .failure(refusal)
        case .success(let p): path = p
        }
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        var st = stat()
        guard fd >= 0, fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            if fd >= 0 { close(fd) }
            return .failure(.init(code: .fileNotFound, why: "not a readable regular file"))
        }
        return .success(OpenFile(fd: fd, size: Int(st.st_size)))
    }

    /// A read request from `client`, on the loop: dropped if `client` already has a transfer,
    /// refused over a cap, otherwise a new transfer on its own channel.
    func request(file: String, mode: String, options: [TFTPOption], from client: IPv4Endpoint, remote: SocketAddress,
                 context: ChannelHandlerContext) {
        let table = self.table.value
        // A client resends its RRQ when the first DATA (or OACK) is slow; the running
        // transfer answers it. Another transfer for the same endpoint would only hold a slot.
        guard table.transfers[client] == nil else {
            counters.add("tftp_duplicates")
            return
        }
        let ofClient = table.perAddress[client.address] ?? 0
        guard table.transfers.count < settings.maxTransfers, ofClient < settings.maxPerClient else {
            counters.add("tftp_refused_busy")
            let why = ofClient >= settings.maxPerClient ? "\(ofClient) transfers to \(client.address) running" : "\(table.transfers.count) transfers running"
            if let quiet = table.busyLog.allow(now: .now) {
                logger.warning("TFTP: \(client) asked for \"\(file)\": refused, server busy (\(why))\(quiet > 0 ? "; \(quiet) more refused since the last such line" : "")")
            }
            // Answered from the request port: under a flood a refusal costs no socket.
            var buffer = context.channel.allocator.buffer(capacity: 16)
            buffer.writeBytes(TFTPPacket.error(code: .notDefined, message: "busy").serialize())
            context.writeAndFlush(NIOAny(AddressedEnvelope(remoteAddress: remote, data: buffer)), promise: nil)
            return
        }
        counters.add("tftp_requests")
        let opened: OpenFile
        switch open(file) {
        case .failure(let refusal):
            counters.add("tftp_refused")
            if let quiet = table.refusalLog.allow(now: .now) {
                logger.warning("TFTP: \(client) asked for \"\(file)\": refused, \(refusal.why)\(quiet > 0 ? "; \(quiet) more refused since the last such line" : "")")
            }
            reject(client, refusal.code, refusal.why)
            return
        case .success(let f): opened = f
        }
        if mode != "octet" { logger.debug("TFTP: \(client) asked for mode \(mode); sending the file as it is") }
        let n = TFTPNegotiation(requested: options, fileSize: opened.size, maxBlockSize: settings.maxBlockSize,
                                maxWindowSize: settings.maxWindowSize, maxTimeoutSeconds: settings.maxTimeoutSeconds)
        let parameters = TFTPTransfer<ContinuousClock.Instant>.Parameters(
            fileSize: opened.size, blockSize: n.blockSize, windowSize: n.windowSize, optionAck: !n.acknowledged.isEmpty,
            timeout: .seconds(n.timeoutSeconds), maxTimeout: .seconds(settings.maxTimeoutSeconds), retries: settings.retries,
            lifetime: settings.lifetime)
        let oack = TFTPPacket.optionAck(n.acknowledged).serialize()
        table.reserve(client)
        let engine = self
        DatagramBootstrap(group: loop)
            .bind(to: local)
            .flatMap { channel in channel.connect(to: remote).map { channel } }
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    channel.closeFuture.whenComplete { _ in engine.table.value.release(client) }
                    let handler = TransferHandler(engine: engine, file: opened, name: file, client: client, parameters: parameters, oack: oack)
                    do { try channel.pipeline.syncOperations.addHandler(handler) } catch {
                        engine.logger.error("TFTP: transfer to \(client): \(error)")
                        channel.close(promise: nil)
                    }
                case .failure(let error):
                    engine.table.value.release(client)
                    engine.logger.error("TFTP: transfer socket for \(client): \(error)")
                }
            }
    }

    /// An error from a fresh socket, as RFC 1350 answers a request it will not serve.
    func reject(_ client: IPv4Endpoint, _ code: TFTPErrorCode, _ message: String) {
        guard let s = try? UDPSocket(bind: settings.address, port: 0, reuse: false) else { return }
        try? s.send(TFTPPacket.error(code: code, message: message).serialize(), to: client)
    }
}

/// The request port: parses requests and hands read requests to the engine.
final class RequestHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    let engine: TFTPServer.Engine

    init(engine: TFTPServer.Engine) { self.engine = engine }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        guard let client = IPv4Endpoint(envelope.remoteAddress) else { return }
        let packet: TFTPPacket
        do { packet = try TFTPPacket(parsing: envelope.data.readableBytesView) } catch {
            engine.counters.add("tftp_malformed")
            engine.logger.notice("TFTP: malformed request from \(client) dropped: \(error)")
            return
        }
        switch packet {
        case .readRequest(let file, let mode, let options):
            engine.request(file: file, mode: mode, options: options, from: client, remote: envelope.remoteAddress, context: context)
        case .writeRequest(let file, _, _):
            engine.counters.add("tftp_refused")
            engine.logger.warning("TFTP: write request for \"\(file)\" from \(client) refused: the server is read-only")
            engine.reject(client, .accessViolation, "read-only server")
        default:
            engine.counters.add("tftp_malformed")
            engine.logger.notice("TFTP: \(client) sent a packet that is not a request to the request port")
            engine.reject(client, .illegalOperation, "not a request")
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // ICMP errors for earlier replies surface here; the request port stays open.
        engine.logger.debug("TFTP: request port: \(error)")
    }
}

/// One transfer's channel, connected to the client: performs what its `TFTPTransfer` says.
final class TransferHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = ByteBuffer

    let engine: TFTPServer.Engine
    let file: OpenFile
    let name: String
    let client: IPv4Endpoint
    let oack: [UInt8]
    let started = ContinuousClock.now
    private var machine: TFTPTransfer<ContinuousClock.Instant>
    private var timer: Scheduled<Void>?

    init(engine: TFTPServer.Engine, file: OpenFile, name: String, client: IPv4Endpoint,
         parameters: TFTPTransfer<ContinuousClock.Instant>.Parameters, oack: [UInt8]) {
        self.engine = engine
        self.file = file
        self.name = name
        self.client = client
        self.oack = oack
        machine = TFTPTransfer(parameters)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        perform(machine.handle(.start(now: .now)), context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data).data.readableBytesView
        switch try? TFTPPacket(parsing: bytes) {
        case .ack(let block): perform(machine.handle(.ack(block: block, now: .now)), context)
        case .error(let code, let message): perform(machine.handle(.error(code: code, message: message)), context)
        default: break  // a stray datagram: the timer decides when to resend
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // ECONNREFUSED: an ICMP port unreachable for our DATA; the client is gone.
        let why = (error as? IOError).map { $0.errnoCode == ECONNREFUSED ? "client port unreachable" : "\($0)" } ?? "\(error)"
        perform(machine.handle(.abort(reason: why)), context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        perform(machine.handle(.abort(reason: "transfer channel closed")), context)
    }

    private func perform(_ actions: [TFTPTransfer<ContinuousClock.Instant>.Action], _ context: ChannelHandlerContext) {
        for action in actions {
            switch action {
            case .sendOptionAck:
                context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: oack)), promise: nil)
            case .sendBlocks(let blocks):
                for i in blocks {
                    guard let packet = data(block: i, allocator: context.channel.allocator) else {
                        let why = "reading block \(i): \(String(cString: strerror(errno)))"
                        context.flush()
                        return perform(machine.handle(.abort(reason: why)), context)
                    }
                    context.write(wrapOutboundOut(packet), promise: nil)
                }
                context.flush()
            case .sendError(let code, let message):
                var buffer = context.channel.allocator.buffer(capacity: 8 + message.utf8.count)
                buffer.writeBytes(TFTPPacket.error(code: code, message: message).serialize())
                context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
            case .scheduleTimeout(let deadline):
                timer?.cancel()
                let delay = ContinuousClock.now.duration(to: deadline)
                let nanos = max(0, delay.components.seconds * 1_000_000_000 + delay.components.attoseconds / 1_000_000_000)
                timer = context.eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(nanos)) { [self] in
                    perform(machine.handle(.timer(now: .now)), context)
                }
            case .finish(let outcome):
                timer?.cancel()
                timer = nil
                finished(outcome)
                context.close(promise: nil)
            }
        }
    }

    /// DATA for block `i` (1-based), read straight into the packet's buffer.
    private func data(block i: Int, allocator: ByteBufferAllocator) -> ByteBuffer? {
        let p = machine.parameters
        let offset = (i - 1) * p.blockSize
        let length = max(0, min(p.blockSize, file.size - offset))
        var buffer = allocator.buffer(capacity: 4 + length)
        buffer.writeInteger(TFTPPacket.Opcode.data.rawValue)
        buffer.writeInteger(UInt16(truncatingIfNeeded: i))
        guard length > 0 else { return buffer }
        let got = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { b -> Int in
            guard let base = b.baseAddress else { return 0 }
            var got = 0
            while got < length {
                let r = pread(file.fd, base + got, length - got, off_t(offset + got))
                if r <= 0 { break }
                got += r
            }
            return got
        }
        return got == length ? buffer : nil
    }

    private func finished(_ outcome: TFTPTransfer<ContinuousClock.Instant>.Outcome) {
        let p = machine.parameters
        switch outcome {
        case .completed:
            engine.counters.add("tftp_completed")
            engine.counters.add("tftp_bytes", p.fileSize)
            let seconds = started.duration(to: .now).seconds
            engine.logger.info("TFTP: sent \(name) (\(p.fileSize) bytes, blksize \(p.blockSize), windowsize \(p.windowSize)) to \(client) in \(String(format: "%.2f", seconds)) s")
        case .failed(let why):
            engine.counters.add("tftp_failed")
            if let quiet = engine.table.value.failureLog.allow(now: .now) {
                engine.logger.warning("TFTP: sending \(name) to \(client) failed: \(why)\(quiet > 0 ? "; \(quiet) more failed since the last such line" : "")")
            }
        }
    }
}
