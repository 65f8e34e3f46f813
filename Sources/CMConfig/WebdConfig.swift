import CMTypes
import Foundation

/// /etc/clustermaker/webd.toml: cm-webd's listener, TLS and logins. webd.toml(5).
public struct WebdConfig: Sendable, Equatable {
    public struct HTTP: Sendable, Equatable {
        /// Where the console listens when systemd passes no socket (cm-webd.socket does).
        public var listen = IPv4Endpoint(address: IPv4Address(rawValue: 0), port: 9443)
        /// PEM certificate chain and key; without them the console speaks plain HTTP, which is
        /// allowed on a loopback address only (a password would cross the network in clear).
        public var tlsCertificate: String?
        public var tlsKey: String?
        /// Connections served at once; more wait in the listen queue.
        public var maxConnections = 512
        /// An idle connection (no request) is closed after this long.
        public var idleTimeout: Duration = .seconds(30)
        /// The largest request body taken (login and action forms are a few hundred bytes).
        public var maxBodyBytes = 64 * 1024
    }

    public struct Auth: Sendable, Equatable {
        /// `NAME:BCRYPT-HASH` lines (htpasswd -B's format); `cmctl web passwd NAME` writes them.
        /// Optional while PAM is on; its users come first.
        public var usersFile = "/etc/clustermaker/webd-users"
        /// Logins with the system's accounts through PAM, for members of `pamGroup`.
        public var pam = true
        public var pamService = "cm-webd"
        public var pamGroup = "clustermaker"
        /// A session ends this long after its login, however busy.
        public var sessionLifetime: Duration = .seconds(8 * 3600)
        /// … or after this long without a request.
        public var sessionIdle: Duration = .seconds(30 * 60)
        /// Sessions open at once; a login past it ends the oldest one.
        public var maxSessions = 1000
        /// Failed logins allowed per client address in `loginWindow`; then 429 until it passes.
        public var loginAttempts = 5
        public var loginWindow: Duration = .seconds(60)
        /// `/metrics` without a session, for Prometheus; off: it needs a login like every page.
        public var publicMetrics = true
    }

    public var http = HTTP()
    public var auth = Auth()

    public init() {}

    public static let fileName = "webd.toml"

    public var tlsEnabled: Bool { http.tlsCertificate != nil }

    /// The defaults alone are refused: the console needs a certificate to listen on the
    /// network, and the message says what to set.
    public static func load(configDir: String) throws(ConfigErrors) -> WebdConfig {
        try parse(ConfigSource.read((configDir as NSString).appendingPathComponent(fileName)))
    }

    public static func parse(_ source: ConfigSource) throws(ConfigErrors) -> WebdConfig {
        let doc = try ConfigDocument(source)
        let root = doc.rootReader
        var config = WebdConfig()

        let h = root.table("http")
        if let text = h.string("listen") {
            if let endpoint = IPv4Endpoint(text), endpoint.port != 0 { config.http.listen = endpoint } else {
                h.error("listen", "\"\(text)\" is not ADDRESS:PORT (e.g. \"0.0.0.0:9443\")")
            }
        }
        for (key, keyPath) in [("tls_certificate", \HTTP.tlsCertificate), ("tls_key", \HTTP.tlsKey)] {
            if let path = h.string(key) {
                if isAbsolutePath(path) { config.http[keyPath: keyPath] = path } else { h.error(key, "\"\(path)\" is not an absolute path") }
            }
        }
        if (config.http.tlsCertificate == nil) != (config.http.tlsKey == nil) {
            h.tableError("tls_certificate and tls_key go together: set both, or neither for plain HTTP on a loopback address")
        } else if config.http.tlsCertificate == nil, !config.http.listen.address.isLoopback {
            h.error("listen", "\(config.http.listen) is not a loopback address, so the console needs TLS: set tls_certificate and tls_key "
                + "(scripts/setup makes a self-signed pair), or listen on 127.0.0.1")
        }
        config.http.maxConnections = h.int("max_connections", range: 1...100_000, default: 512)
        config.http.idleTimeout = h.duration("idle_timeout", range: .seconds(1) ... .seconds(3600), default: .seconds(30))
        config.http.maxBodyBytes = h.int("max_body_bytes", range: 1024...(16 << 20), default: 64 * 1024)
        h.finish()

        let a = root.table("auth")
        if let path = a.string("users_file") {
            if isAbsolutePath(path) { config.auth.usersFile = path } else { a.error("users_file", "\"\(path)\" is not an absolute path") }
        }
        config.auth.pam = a.bool("pam", default: true)
        for (key, keyPath) in [("pam_service", \Auth.pamService), ("pam_group", \Auth.pamGroup)] {
            if let name = a.string(key) {
                if (1...64).contains(name.utf8.count), name.utf8.allSatisfy({ (0x21...0x7e).contains($0) && $0 != 0x2f }) {
                    config.auth[keyPath: keyPath] = name
                } else {
                    a.error(key, "\"\(name)\" is not a name (1-64 printable characters, no \"/\" or spaces)")
                }
            }
        }
        config.auth.sessionLifetime = a.duration("session_lifetime", range: .seconds(60) ... .seconds(30 * 86400), default: .seconds(8 * 3600))
        config.auth.sessionIdle = a.duration("session_idle", range: .seconds(60) ... .seconds(30 * 86400), default: .seconds(30 * 60))
        config.auth.maxSessions = a.int("max_sessions", range: 1...1_000_000, default: 1000)
        config.auth.loginAttempts = a.int("login_attempts", range: 1...1000, default: 5)
        config.auth.loginWindow = a.duration("login_window", range: .seconds(1) ... .seconds(86400), default: .seconds(60))
        config.auth.publicMetrics = a.bool("public_metrics", default: true)
        a.finish()

        root.finish()
        try doc.check()
        return config
    }

    static func isAbsolutePath(_ s: String) -> Bool {
        s.hasPrefix("/") && s.count > 1 && !s.contains("\n") && !s.contains("\0")
    }
}

extension IPv4Address {
    /// 127.0.0.0/8.
    public var isLoopback: Bool { rawValue >> 24 == 127 }
}
