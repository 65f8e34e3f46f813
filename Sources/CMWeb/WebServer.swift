import CMConsole
import CMConfig
import CMTypes
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOPosix
import NIOSSL

/// The console's listener: Hummingbird's HTTP/1 channel (behind TLS when webd.toml has a
/// certificate) on a socket systemd passed (cm-webd.socket, so a restart loses no connection)
/// or on one bound here. Connections past max_connections wait in the listen queue.
public struct WebServer: Sendable {
    public enum Listener: Sendable, CustomStringConvertible {
        case endpoint(IPv4Endpoint)
        case descriptor(CInt)
        public var description: String {
            switch self {
            case .endpoint(let e): return e.description
            case .descriptor(let fd): return "socket fd \(fd) from systemd"
            }
        }
    }

    let config: WebdConfig
    let responder: RouterResponder<WebContext>
    let logger: Logger

    public init(config: WebdConfig, router: Router<WebContext>, logger: Logger) {
        self.config = config
        self.responder = router.buildResponder()
        self.logger = logger
    }

    /// TLS settings from the PEM files; a missing or unreadable file is an error naming it.
    public static func tlsConfiguration(_ config: WebdConfig) throws -> TLSConfiguration? {
        guard let certPath = config.http.tlsCertificate, let keyPath = config.http.tlsKey else { return nil }
        let chain: [NIOSSLCertificate]
        let key: NIOSSLPrivateKey
        do { chain = try NIOSSLCertificate.fromPEMFile(certPath) } catch {
            throw WebServerError("\(certPath): cannot read the TLS certificate: \(error)")
        }
        do { key = try NIOSSLPrivateKey(file: keyPath, format: .pem) } catch {
            throw WebServerError("\(keyPath): cannot read the TLS key: \(error)")
        }
        guard !chain.isEmpty else { throw WebServerError("\(certPath): no certificate in it") }
        var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        tls.minimumTLSVersion = .tlsv12
        return tls
    }

    /// Serves until cancelled; `ready` runs once the socket accepts.
    public func run(listener: Listener, ready: @Sendable () -> Void = {}) async throws {
        let responder = responder, logger = logger
        let http = HTTP1Channel(responder: { request, writer, channel in
            let context = WebContext(source: .init(channel: channel, logger: logger))
            var response: Response
            do {
                response = try await responder.respond(to: request, context: context)
            } catch {
                logger.error("\(request.method) \(request.uri.path): \(error)")
                response = Response(status: .internalServerError)
            }
            response.headers[.date] = httpDate(Date())
            try await writer.write(response: response.head, body: response.body)
        }, configuration: .init(idleTimeout: .seconds(Int64(config.http.idleTimeout.seconds.rounded(.up)))))
        let child: any ServerChildChannel
        if let tls = try Self.tlsConfiguration(config) {
            child = try TLSChannel(http, tlsConfiguration: tls)
        } else {
            child = http
        }
        try await Self.serve(child, listener: listener, maxConnections: config.http.maxConnections, logger: logger, ready: ready)
    }

    static func serve<Child: ServerChildChannel>(_ child: Child, listener: Listener, maxConnections: Int, logger: Logger,
                                                 ready: @Sendable () -> Void) async throws {
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(AvailableConnectionsChannelHandler(maxConnections: maxConnections))
                }
            }
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
        let initializer: @Sendable (any Channel) -> EventLoopFuture<Child.Value> = { child.setup(channel: $0, logger: logger) }
        let server: NIOAsyncChannel<Child.Value, Never>
        switch listener {
        case .endpoint(let e):
            server = try await bootstrap.bind(host: e.address.description, port: Int(e.port), serverBackPressureStrategy: nil, childChannelInitializer: initializer)
        case .descriptor(let fd):
            server = try await bootstrap.bind(fd, cleanupExistingSocketFile: false, serverBackPressureStrategy: nil, childChannelInitializer: initializer)
        }
        logger.info("console listening on \(server.channel.localAddress.map { "\($0)" } ?? listener.description)")
        ready()
        await withTaskCancellationHandler {
            await withDiscardingTaskGroup { group in
                do {
                    try await server.executeThenClose { inbound in
                        for try await connection in inbound {
                            group.addTask { await child.handle(value: connection, logger: logger) }
                        }
                    }
                } catch {
                    if !Task.isCancelled { logger.error("accepting connections: \(error)") }
                }
            }
        } onCancel: {
            server.channel.close(promise: nil)
        }
    }
}

/// RFC 9110's IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT".
func httpDate(_ date: Date) -> String {
    var t = time_t(date.timeIntervalSince1970)
    var parts = tm()
    gmtime_r(&t, &parts)
    let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"], months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
    return "\(days[Int(parts.tm_wday) % 7]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon) % 12]) \(parts.tm_year + 1900) "
        + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
}

public struct WebServerError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
