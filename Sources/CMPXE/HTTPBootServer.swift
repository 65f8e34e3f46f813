import CMConfig
import CMTypes
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
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
    let service: PXEService
    let channel: any Channel

    init(service: PXEService, port: Int, group: MultiThreadedEventLoopGroup) async throws {
        self.service = service
        channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [service] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(HTTPBootHandler(service: service))
                }
            }
            .bind(host: "0.0.0.0", port: port).get()
    }

    func close() async { try? await channel.close() }
}

final class HTTPBootHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let service: PXEService
    private var head: HTTPRequestHead?

    init(service: PXEService) { self.service = service }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h): head = h
        case .body: break
        case .end:
            guard let h = head else { return }
            head = nil
            respond(context: context, to: h)
        }
    }

    private func respond(context: ChannelHandlerContext, to request: HTTPRequestHead) {
        service.counters.add("http_requests")
        let client = context.remoteAddress?.ipAddress.flatMap(IPv4Address.init) ?? IPv4Address(rawValue: 0)
        guard request.method == .GET || request.method == .HEAD else {
            return simple(context, request, .methodNotAllowed, "only GET and HEAD\n", extra: [("Allow", "GET, HEAD")])
        }
        let path = request.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init)
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
        default:
            simple(context, request, .notFound, "not found: \(path) (cm-pxed serves /boot/MAC.ipxe, /boot/MAC/IMAGE/FILE, /images/IMAGE/FILE)\n")
        }
    }

    private func sendFile(_ context: ChannelHandlerContext, _ request: HTTPRequestHead, image: String, file: String, node: MACAddress?) {
        guard PxedConfig.isName(image), BootPlan.isServableName(file) else {
            service.counters.add("http_refused")
            return simple(context, request, .notFound, "no such image file \(image)/\(file)\n")
        }
        let path = "\(service.imagesDirectory)/\(image)/\(file)"
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        var st = stat()
        guard fd >= 0, fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            if fd >= 0 { close(fd) }
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
                close(fd)
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
            let region = FileRegion(fileHandle: handle, readerIndex: range.lowerBound, endIndex: range.upperBound)
            context.write(wrapOutboundOut(.body(.fileRegion(region))), promise: nil)
        }
        let service = self.service, keepAlive = request.isKeepAlive, complete = range.upperBound == size && request.method == .GET
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { result in
            try? handle.close()
            if case .success = result {
                service.counters.add("http_files")
                if complete, let node { service.fileSent(mac: node, image: image, file: file) }
            }
            if !keepAlive { channel.close(promise: nil) }
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
        let keepAlive = request.isKeepAlive, channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in if !keepAlive { channel.close(promise: nil) } }
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
