import CMTypes
import Foundation

/// How a backend pool picks a server for a new connection.
public enum BalanceAlgorithm: String, Sendable, Equatable, CaseIterable {
    /// Smooth weighted round-robin (equal weights: plain round-robin).
    case roundrobin
    /// Fewest active connections relative to weight.
    case leastconn
    /// Consistent hashing of the client's address: a client keeps its server, and when a
    /// server leaves only the clients that were on it move.
    case source
}

public enum FrontendMode: String, Sendable, Equatable {
    case tcp, http
}

/// One server of a pool: lbd.toml(5) `[[backend.server]]`.
public struct ServerConfig: Sendable, Equatable {
    public var address: IPv4Endpoint
    /// The node it runs on, as cm-healthd and `cmctl lb drain` name it; default: the address.
    public var node: String
    public var weight: Int
    /// 0: no limit.
    public var maxConnections: Int
    /// Used only while no regular server is available.
    public var backup: Bool

    public init(address: IPv4Endpoint, node: String? = nil, weight: Int = 1, maxConnections: Int = 0, backup: Bool = false) {
        self.address = address
        self.node = node ?? address.address.description
        self.weight = weight
        self.maxConnections = maxConnections
        self.backup = backup
    }

    /// "node001 (10.77.0.11:8080)" or the address alone.
    public var label: String { node == address.address.description ? address.description : "\(node) (\(address))" }
}

/// lbd.toml(5) `[[backend]]`.
public struct BackendConfig: Sendable, Equatable {
    public var name: String
    public var algorithm: BalanceAlgorithm
    public var servers: [ServerConfig]
    /// Further servers tried when connecting fails, before the client sees an error.
    public var retries: Int
    /// How long a server whose connect failed stays out of the pool (passive check).
    public var failBackoff: Duration
    /// cm-healthd check followed for each server: CHECK@NODE down takes the server out.
    public var healthCheck: String?

    public init(name: String, algorithm: BalanceAlgorithm = .roundrobin, servers: [ServerConfig], retries: Int = 2,
                failBackoff: Duration = .seconds(5), healthCheck: String? = nil) {
        self.name = name
        self.algorithm = algorithm
        self.servers = servers
        self.retries = retries
        self.failBackoff = failBackoff
        self.healthCheck = healthCheck
    }
}

/// lbd.toml(5) `[[frontend]]`.
public struct FrontendConfig: Sendable, Equatable {
    public var name: String
    public var listen: IPv4Endpoint
    public var mode: FrontendMode
    public var backend: String
    public var connectTimeout: Duration
    /// Idle time allowed on the client side.
    public var clientTimeout: Duration
    /// Idle time allowed on the server side.
    public var serverTimeout: Duration
    /// TCP mode: send a PROXY protocol v2 header to the server first.
    public var proxyProtocol: Bool
    /// HTTP mode: request line plus headers, in bytes (431 above).
    public var maxHeaderBytes: Int
    /// HTTP mode: request body, in bytes (413 above).
    public var maxBodyBytes: Int
    /// HTTP mode: from a request's first byte (the first request: from the accept) to the end
    /// of its head, however steadily the bytes trickle in (client_timeout is reset by each);
    /// 408 when it runs out. HAProxy's `timeout http-request`, nginx's `client_header_timeout`.
    public var httpRequestTimeout: Duration
    /// Client connections of this frontend open at once; 0: only `[lbd] max_connections`.
    public var maxConnections: Int

    public init(name: String, listen: IPv4Endpoint, mode: FrontendMode, backend: String, connectTimeout: Duration = .seconds(2),
                clientTimeout: Duration = .seconds(60), serverTimeout: Duration = .seconds(60), proxyProtocol: Bool = false,
                maxHeaderBytes: Int = 16384, maxBodyBytes: Int = 100 << 20, httpRequestTimeout: Duration = .seconds(10),
                maxConnections: Int = 0) {
        self.name = name
        self.listen = listen
        self.mode = mode
        self.backend = backend
        self.connectTimeout = connectTimeout
        self.clientTimeout = clientTimeout
        self.serverTimeout = serverTimeout
        self.proxyProtocol = proxyProtocol
        self.maxHeaderBytes = maxHeaderBytes
        self.maxBodyBytes = maxBodyBytes
        self.httpRequestTimeout = httpRequestTimeout
        self.maxConnections = maxConnections
    }
}

/// /etc/clustermaker/lbd.toml — lbd.toml(5).
public struct LbdConfig: Sendable, Equatable {
    public struct Daemon: Sendable, Equatable {
        /// Event-loop threads; 0: one per CPU.
        public var threads = 0
        /// Each event-loop thread on its own CPU of those the process may use.
        public var pinThreads = true
        /// With pinned threads: a new connection goes to the thread on the CPU that took its
        /// packets (SO_INCOMING_CPU), and an idle TCP connection follows when they move, within a
        /// bound on how uneven the threads may get.
        public var incomingCPU = true
        /// Client connections across all frontends; more wait in the listen queue.
        public var maxConnections = 10000
        /// On stop: how long open connections may take to finish before they are closed.
        public var drainTimeout: Duration = .seconds(10)
    }

    public var lbd = Daemon()
    public var frontends: [FrontendConfig] = []
    public var backends: [BackendConfig] = []

    public init() {}

    public static let fileName = "lbd.toml"

    public static func load(configDir: String) throws(ConfigErrors) -> LbdConfig {
        try parse(ConfigSource.read((configDir as NSString).appendingPathComponent(fileName)))
    }

    public func backend(named name: String) -> BackendConfig? { backends.first { $0.name == name } }

    public static func parse(_ source: ConfigSource) throws(ConfigErrors) -> LbdConfig {
        let doc = try ConfigDocument(source)
        let root = doc.rootReader
        var config = LbdConfig()

        let d = root.table("lbd")
        config.lbd.threads = d.int("threads", range: 0...64, default: 0)
        config.lbd.pinThreads = d.bool("pin_threads", default: true)
        config.lbd.incomingCPU = d.bool("incoming_cpu", default: true)
        config.lbd.maxConnections = d.int("max_connections", range: 1...1_000_000, default: 10000)
        config.lbd.drainTimeout = d.duration("drain_timeout", range: .zero ... .seconds(3600), default: .seconds(10))
        d.finish()

        var backendNames = Set<String>()
        for t in root.tables("backend") {
            if let b = parseBackend(t) {
                if !backendNames.insert(b.name).inserted {
                    t.error("name", "duplicate backend name \"\(b.name)\"")
                } else {
                    config.backends.append(b)
                }
            }
            t.finish()
        }
        var frontendNames = Set<String>(), listens = [IPv4Endpoint: String]()
        for t in root.tables("frontend") {
            if let f = parseFrontend(t) {
                if !frontendNames.insert(f.name).inserted {
                    t.error("name", "duplicate frontend name \"\(f.name)\"")
                } else if let other = listens[f.listen] {
                    t.error("listen", "\(f.listen) is already frontend \"\(other)\"'s")
                } else if !backendNames.contains(f.backend) {
                    t.error("backend", "no [[backend]] is named \"\(f.backend)\"")
                } else {
                    listens[f.listen] = f.name
                    config.frontends.append(f)
                }
            }
            t.finish()
        }
        root.finish()
        try doc.check()
        return config
    }

    static func isName(_ s: String) -> Bool {
        (1...32).contains(s.utf8.count) && s.utf8.allSatisfy { TOMLPositions.isBare($0) }
    }

    static func parseFrontend(_ t: TableReader) -> FrontendConfig? {
        let name = t.string("name", required: true)
        if let name {
            t.label = "frontend \"\(name)\""
            if !isName(name) { t.error("name", "\"\(name)\" is not a valid frontend name (1-32 of A-Z, a-z, 0-9, \"_\", \"-\")") }
        }
        var listen: IPv4Endpoint?
        if let text = t.string("listen", required: true) {
            listen = IPv4Endpoint(text)
            if listen == nil { t.error("listen", "\"\(text)\" is not \(IPv4Endpoint.expected)") }
        }
        var mode: FrontendMode?
        if let text = t.string("mode", required: true) {
            mode = FrontendMode(rawValue: text)
            if mode == nil { t.error("mode", "\"\(text)\" is not a mode (tcp or http)") }
        }
        let backend = t.string("backend", required: true)
        let connectTimeout = t.duration("connect_timeout", range: .milliseconds(1) ... .seconds(300), default: .seconds(2))
        let clientTimeout = t.duration("client_timeout", range: .milliseconds(100) ... .seconds(86400), default: .seconds(60))
        let serverTimeout = t.duration("server_timeout", range: .milliseconds(100) ... .seconds(86400), default: .seconds(60))
        let proxyProtocol = t.bool("proxy_protocol", default: false)
        let maxHeaderBytes = t.int("max_header_bytes", range: 1024...1 << 20, default: 16384)
        let maxBodyBytes = t.int("max_body_bytes", range: 0...1 << 40, default: 100 << 20)
        let httpRequestTimeout = t.duration("http_request_timeout", range: .milliseconds(100) ... .seconds(3600), default: .seconds(10))
        let maxConnections = t.int("max_connections", range: 0...1_000_000, default: 0)
        if mode == .http, proxyProtocol { t.error("proxy_protocol", "is for mode = \"tcp\"; HTTP mode sends X-Forwarded-For instead") }
        if mode == .tcp {
            for key in ["max_header_bytes", "max_body_bytes", "http_request_timeout"] where t.has(key) { t.error(key, "is for mode = \"http\"") }
        }
        guard let name, let listen, let mode, let backend else { return nil }
        return FrontendConfig(name: name, listen: listen, mode: mode, backend: backend, connectTimeout: connectTimeout,
                              clientTimeout: clientTimeout, serverTimeout: serverTimeout, proxyProtocol: proxyProtocol,
                              maxHeaderBytes: maxHeaderBytes, maxBodyBytes: maxBodyBytes, httpRequestTimeout: httpRequestTimeout,
                              maxConnections: maxConnections)
    }

    static func parseBackend(_ t: TableReader) -> BackendConfig? {
        let name = t.string("name", required: true)
        if let name {
            t.label = "backend \"\(name)\""
            if !isName(name) { t.error("name", "\"\(name)\" is not a valid backend name (1-32 of A-Z, a-z, 0-9, \"_\", \"-\")") }
        }
        var algorithm = BalanceAlgorithm.roundrobin
        if let text = t.string("algorithm") {
            if let a = BalanceAlgorithm(rawValue: text) {
                algorithm = a
            } else {
                t.error("algorithm", "\"\(text)\" is not an algorithm (\(BalanceAlgorithm.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
        }
        let retries = t.int("retries", range: 0...10, default: 2)
        let failBackoff = t.duration("fail_backoff", range: .milliseconds(100) ... .seconds(3600), default: .seconds(5))
        let healthCheck = t.string("health_check")
        if let healthCheck, !isName(healthCheck) { t.error("health_check", "\"\(healthCheck)\" is not a check name (as in healthd.toml)") }

        var servers: [ServerConfig] = []
        let serverTables = t.tables("server")
        if serverTables.isEmpty, !t.has("server") { t.tableError("has no [[backend.server]]") }
        for s in serverTables {
            s.label = t.label
            var address: IPv4Endpoint?
            if let text = s.string("address", required: true) {
                address = IPv4Endpoint(text)
                if address == nil { s.error("address", "\"\(text)\" is not \(IPv4Endpoint.expected)") }
            }
            let node = s.string("node")
            if let node, !NodeName.isValid(node) { s.error("node", "\"\(node)\" is not a node name") }
            let weight = s.int("weight", range: 0...256, default: 1)
            let maxConnections = s.int("max_connections", range: 0...1_000_000, default: 0)
            let backup = s.bool("backup", default: false)
            s.finish()
            guard let address else { continue }
            if servers.contains(where: { $0.address == address }) {
                s.error("address", "\(address) is listed twice")
                continue
            }
            servers.append(ServerConfig(address: address, node: node, weight: weight, maxConnections: maxConnections, backup: backup))
        }
        if !servers.isEmpty, !servers.contains(where: { !$0.backup }) { t.tableError("every server is a backup; at least one must not be") }
        guard let name else { return nil }
        return BackendConfig(name: name, algorithm: algorithm, servers: servers, retries: retries, failBackoff: failBackoff, healthCheck: healthCheck)
    }
}
