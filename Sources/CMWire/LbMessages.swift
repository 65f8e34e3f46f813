import CMTypes
import Foundation

extension MessageType {
    public static let lbStatus = "lb.status"
    /// The counters of `lb.status` and the loops' loads, in Prometheus' text format.
    public static let lbMetrics = "lb.metrics"
    /// Drain or undrain the servers of a node (or one server address).
    public static let lbDrain = "lb.drain"
    /// Event: a server left or rejoined a pool.
    public static let lbServer = "lb.server"
}

extension Topic {
    public static let lb = "lb"
}

/// Why a server takes new connections or not, in the order `cmctl lb status` explains it.
public enum LbServerState: String, Codable, Sendable, CaseIterable {
    /// Takes new connections.
    case up
    /// Its cm-healthd check is down.
    case down
    /// A connect failed; out for fail_backoff.
    case failed
    /// Drained by `cmctl lb drain`.
    case drained
    /// Weight 0, or at max_connections.
    case full
}

public struct LbServerStatus: Codable, Sendable, Equatable {
    public var address: IPv4Endpoint
    public var node: String
    public var weight: Int
    public var backup: Bool
    public var state: LbServerState
    public var active: Int
    public var total: Int
    public var failures: Int
    public var maxConnections: Int

    public init(address: IPv4Endpoint, node: String, weight: Int, backup: Bool, state: LbServerState, active: Int, total: Int, failures: Int, maxConnections: Int) {
        self.address = address
        self.node = node
        self.weight = weight
        self.backup = backup
        self.state = state
        self.active = active
        self.total = total
        self.failures = failures
        self.maxConnections = maxConnections
    }
}

public struct LbBackendStatus: Codable, Sendable, Equatable {
    public var name: String
    public var algorithm: String
    public var servers: [LbServerStatus]
    public init(name: String, algorithm: String, servers: [LbServerStatus]) {
        self.name = name
        self.algorithm = algorithm
        self.servers = servers
    }
}

public struct LbFrontendStatus: Codable, Sendable, Equatable {
    public var name: String
    public var listen: IPv4Endpoint
    public var mode: String
    public var backend: String
    /// Client connections open now and since start.
    public var active: Int
    public var total: Int
    /// HTTP requests (TCP mode: connections) since start, and per second over the last few seconds.
    public var requests: Int
    public var requestsPerSecond: Double
    /// Clients that got an error (TCP: closed without a server; HTTP: a 4xx/5xx of our own).
    public var errors: Int
    /// Connect attempts that failed over to another server unseen by the client.
    public var retries: Int
    /// The frontend's own max_connections; 0: only the global one.
    public var maxConnections: Int
    /// Times the frontend reached its max_connections and stopped accepting.
    public var full: Int
    /// HTTP requests whose head was not complete within http_request_timeout (408).
    public var requestTimeouts: Int

    public init(name: String, listen: IPv4Endpoint, mode: String, backend: String, active: Int, total: Int, requests: Int,
                requestsPerSecond: Double, errors: Int, retries: Int, maxConnections: Int = 0, full: Int = 0, requestTimeouts: Int = 0) {
        self.name = name
        self.listen = listen
        self.mode = mode
        self.backend = backend
        self.active = active
        self.total = total
        self.requests = requests
        self.requestsPerSecond = requestsPerSecond
        self.errors = errors
        self.retries = retries
        self.maxConnections = maxConnections
        self.full = full
        self.requestTimeouts = requestTimeouts
    }

    /// The counters added later may be missing: a cmctl newer than the cm-lbd still running.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(name: try c.decode(String.self, forKey: .name), listen: try c.decode(IPv4Endpoint.self, forKey: .listen),
                  mode: try c.decode(String.self, forKey: .mode), backend: try c.decode(String.self, forKey: .backend),
                  active: try c.decode(Int.self, forKey: .active), total: try c.decode(Int.self, forKey: .total),
                  requests: try c.decode(Int.self, forKey: .requests), requestsPerSecond: try c.decode(Double.self, forKey: .requestsPerSecond),
                  errors: try c.decode(Int.self, forKey: .errors), retries: try c.decode(Int.self, forKey: .retries),
                  maxConnections: try c.decodeIfPresent(Int.self, forKey: .maxConnections) ?? 0,
                  full: try c.decodeIfPresent(Int.self, forKey: .full) ?? 0,
                  requestTimeouts: try c.decodeIfPresent(Int.self, forKey: .requestTimeouts) ?? 0)
    }
}

public struct LbStatusReply: Codable, Sendable, Equatable {
    public var frontends: [LbFrontendStatus]
    public var backends: [LbBackendStatus]
    public init(frontends: [LbFrontendStatus], backends: [LbBackendStatus]) {
        self.frontends = frontends
        self.backends = backends
    }
}

public struct LbMetricsReply: Codable, Sendable, Equatable {
    /// Prometheus text exposition format 0.0.4.
    public var text: String
    public init(text: String) { self.text = text }
}

public struct LbDrainRequest: Codable, Sendable, Equatable {
    /// A node name, or a server's address:port.
    public var target: String
    public var drain: Bool
    public init(target: String, drain: Bool) {
        self.target = target
        self.drain = drain
    }
}

public struct LbDrainReply: Codable, Sendable, Equatable {
    /// "BACKEND/ADDRESS" of every server it applied to.
    public var servers: [String]
    public init(servers: [String]) { self.servers = servers }
}

/// Body of `lb.server` events.
public struct LbServerChange: Codable, Sendable, Equatable {
    public var backend: String
    public var address: IPv4Endpoint
    public var node: String
    public var state: LbServerState
    public var reason: String
    public var at: Date
    public init(backend: String, address: IPv4Endpoint, node: String, state: LbServerState, reason: String, at: Date) {
        self.backend = backend
        self.address = address
        self.node = node
        self.state = state
        self.reason = reason
        self.at = at
    }
}
