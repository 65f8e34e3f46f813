import CMAuth
import CMConfig
import CMConsole
import CMDaemon
import CMTypes
import CMWeb
import CMWire
import Foundation
import Logging

/// What cm-webd reads at start and on SIGHUP: webd.toml, the users file it names (checked
/// line by line), the TLS pair (read, so that --check-config finds a bad one) and the cluster's
/// name for the pages' titles.
struct WebSetup: Sendable {
    var config: WebdConfig
    var users: UsersFile
    var cluster: String
}

/// cm-webd plugged into the shared daemon lifecycle: the console (WebApp) behind its own HTTP
/// listener; the control socket answers `status` like every daemon's.
struct WebDaemon: Daemon {
    static let suite = SuiteDaemon.webd

    let app: WebApp
    let server: WebServer
    let listener: WebServer.Listener
    let listening: String
    let logger: Logger

    static func loadConfiguration(configDir: String) throws -> WebSetup {
        let config = try WebdConfig.load(configDir: configDir)
        // With PAM on, a users file is optional; without, it is the only way in.
        let users = config.auth.pam && !FileManager.default.fileExists(atPath: config.auth.usersFile)
            ? UsersFile(hashes: [:]) : try UsersFile.load(config.auth.usersFile)
        _ = try WebServer.tlsConfiguration(config)
        let cluster = (try? ClusterConfig.load(configDir: configDir))?.name ?? "cluster"
        return WebSetup(config: config, users: users, cluster: cluster)
    }

    static func make(configuration: WebSetup, options: DaemonOptions, events: EventHub, logger: Logger) async throws -> WebDaemon {
        let app = WebApp(config: configuration.config, users: configuration.users, suite: SuiteClient(runtimeDirectory: options.runtimeDir, cache: AnswerCache(maxAge: .seconds(1))),
                         cluster: configuration.cluster, logger: logger)
        // The listening socket exists before READY=1: systemd's (cm-webd.socket), else bound here
        // now, so that a port in use fails the start instead of a later request.
        let listener: WebServer.Listener, listening: String
        if let fd = ListenFDs.passed.socket(named: "http") {
            listener = .descriptor(fd)
            listening = "socket from systemd"
        } else {
            listener = .descriptor(try ListeningSocket.bind(configuration.config.http.listen))
            listening = configuration.config.http.listen.description
        }
        return WebDaemon(app: app, server: WebServer(config: configuration.config, router: app.router(), logger: logger),
                         listener: listener, listening: listening, logger: logger)
    }

    func routes(into router: inout WireRouter) {}

    func run() async throws {
        app.relay.followAll()
        try await server.run(listener: listener)
    }

    func apply(_ configuration: WebSetup) async throws {
        app.apply(config: configuration.config, users: configuration.users)
        logger.notice("users file and session settings reloaded; the listener and TLS change on restart")
    }

    var statusLine: String {
        "console on \(listening); \(app.sessions.count) sessions, \(app.relay.clientCount) live pages"
    }

    func shutdown() async {}
}
