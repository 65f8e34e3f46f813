import CMTypes
import Foundation

/// cm-healthd's messages: checks, their history, node metrics.
extension MessageType {
    public static let healthList = "health.list"
    public static let healthShow = "health.show"
    public static let healthHistory = "health.history"
    /// Counts by state, each node's tally and the checks that are not up: what an overview
    /// needs, without every check (HealthSummaryReply).
    public static let healthSummary = "health.summary"
    /// Event: a check changed state; body HealthTransition.
    public static let healthTransition = "health.transition"
    public static let metricsQuery = "metrics.query"
    /// Every scraped node's newest values (NodeMetricsLatestReply): cm-webd's /metrics.
    public static let metricsLatest = "metrics.latest"
}

extension Topic {
    public static let health = "health"
}

public struct ProbeSummary: Codable, Sendable, Equatable {
    public var ok: Bool
    public var message: String
    public var latencyMs: Double
    public var at: Date
    public init(ok: Bool, message: String, latencyMs: Double, at: Date) {
        self.ok = ok
        self.message = message
        self.latencyMs = latencyMs
        self.at = at
    }
}

/// One check instance as cm-healthd sees it now.
public struct CheckStatus: Codable, Sendable, Equatable {
    public var id: CheckID
    public var type: String
    public var address: IPv4Address
    public var state: HealthState
    /// When the current state began (nil while unknown since start).
    public var since: Date?
    public var lastProbe: ProbeSummary?
    public var consecutiveSuccesses: Int
    public var consecutiveFailures: Int
    public var intervalMs: Int64
    public var timeoutMs: Int64
    public var rise: Int
    public var fall: Int

    public init(id: CheckID, type: String, address: IPv4Address, state: HealthState, since: Date?, lastProbe: ProbeSummary?,
                consecutiveSuccesses: Int, consecutiveFailures: Int, intervalMs: Int64, timeoutMs: Int64, rise: Int, fall: Int) {
        self.id = id
        self.type = type
        self.address = address
        self.state = state
        self.since = since
        self.lastProbe = lastProbe
        self.consecutiveSuccesses = consecutiveSuccesses
        self.consecutiveFailures = consecutiveFailures
        self.intervalMs = intervalMs
        self.timeoutMs = timeoutMs
        self.rise = rise
        self.fall = fall
    }
}

public struct HealthListRequest: PagedRequest, Codable, Equatable {
    public var node: NodeName?
    public var state: HealthState?
    /// Paging: the `next` of the previous page.
    public var cursor: String?
    public init(node: NodeName? = nil, state: HealthState? = nil, cursor: String? = nil) {
        self.node = node
        self.state = state
        self.cursor = cursor
    }
}

/// One page of checks, in the order of their ids' text (`check@node`).
public struct HealthListReply: PagedReply, Codable, Sendable, Equatable {
    public var checks: [CheckStatus]
    public var next: String?
    public var items: [CheckStatus] { checks }
    public init(checks: [CheckStatus], next: String? = nil) {
        self.checks = checks
        self.next = next
    }
}

public struct HealthShowRequest: Codable, Sendable, Equatable {
    public var id: CheckID
    public init(id: CheckID) { self.id = id }
}

/// A state change of one check; also the body of `health.transition` events.
public struct HealthTransition: Codable, Sendable, Equatable {
    public var id: CheckID
    public var from: HealthState
    public var to: HealthState
    public var at: Date
    public var message: String
    public init(id: CheckID, from: HealthState, to: HealthState, at: Date, message: String) {
        self.id = id
        self.from = from
        self.to = to
        self.at = at
        self.message = message
    }
}

public struct HealthShowReply: Codable, Sendable, Equatable {
    public var check: CheckStatus
    public var recent: [HealthTransition]
    public init(check: CheckStatus, recent: [HealthTransition]) {
        self.check = check
        self.recent = recent
    }
}

public struct HealthHistoryRequest: PagedRequest, Codable, Equatable {
    public var id: CheckID?
    public var since: Date?
    /// How many transitions the client wants in all, newest first; one page holds at most
    /// `HealthHistoryRequest.pageSize` of them.
    public var limit: Int
    /// Paging: the `next` of the previous page.
    public var cursor: String?
    public static let pageSize = 1000
    public init(id: CheckID? = nil, since: Date? = nil, limit: Int = 50, cursor: String? = nil) {
        self.id = id
        self.since = since
        self.limit = limit
        self.cursor = cursor
    }
}

public struct HealthHistoryReply: PagedReply, Codable, Sendable, Equatable {
    public var transitions: [HealthTransition]
    public var next: String?
    public var items: [HealthTransition] { transitions }
    public init(transitions: [HealthTransition], next: String? = nil) {
        self.transitions = transitions
        self.next = next
    }
}

public struct MetricsQuery: Codable, Sendable, Equatable {
    public var node: NodeName
    public var since: Date
    public var until: Date?
    /// Series names to return; nil for all.
    public var series: [String]?
    public init(node: NodeName, since: Date, until: Date? = nil, series: [String]? = nil) {
        self.node = node
        self.since = since
        self.until = until
        self.series = series
    }
}

public struct MetricPoint: Codable, Sendable, Equatable {
    public var t: Date
    public var v: Double
    public init(t: Date, v: Double) {
        self.t = t
        self.v = v
    }
}

public struct MetricSeries: Codable, Sendable, Equatable {
    public var name: String
    /// "raw", "1m" or "1h": which store the points came from.
    public var resolution: String
    public var points: [MetricPoint]
    public init(name: String, resolution: String, points: [MetricPoint]) {
        self.name = name
        self.resolution = resolution
        self.points = points
    }
}

public struct MetricsReply: Codable, Sendable, Equatable {
    public var node: NodeName
    public var series: [MetricSeries]
    public var lastScrape: Date?
    public var lastError: String?
    public init(node: NodeName, series: [MetricSeries], lastScrape: Date?, lastError: String?) {
        self.node = node
        self.series = series
        self.lastScrape = lastScrape
        self.lastError = lastError
    }
}

/// One node's newest scrape: the suite's series (cpu_percent, mem_percent, load1, …) as its
/// last scrape gave them, when, and the scrape's error if it failed.
public struct NodeLatestMetrics: Codable, Sendable, Equatable {
    public var node: NodeName
    public var at: Date?
    public var error: String?
    public var values: [String: Double]
    public init(node: NodeName, at: Date?, error: String?, values: [String: Double]) {
        self.node = node
        self.at = at
        self.error = error
        self.values = values
    }
}

public struct NodeMetricsLatestReply: Codable, Sendable, Equatable {
    public var nodes: [NodeLatestMetrics]
    public init(nodes: [NodeLatestMetrics]) { self.nodes = nodes }
}

/// One node's checks in numbers.
public struct NodeHealthTally: Codable, Sendable, Equatable {
    public var node: NodeName
    public var checks: Int
    public var down: Int
    public var unknown: Int
    /// The address its checks probe (the first check's).
    public var address: IPv4Address
    public init(node: NodeName, checks: Int, down: Int, unknown: Int, address: IPv4Address) {
        self.node = node
        self.checks = checks
        self.down = down
        self.unknown = unknown
        self.address = address
    }

    /// The worst of its checks.
    public var health: HealthState { down > 0 ? .down : unknown > 0 ? .unknown : .up }

    /// Counts one more check in `state`.
    public mutating func count(_ state: HealthState) {
        checks += 1
        if state == .down { down += 1 } else if state == .unknown { unknown += 1 }
    }
}

public struct HealthSummaryRequest: Codable, Sendable, Equatable {
    /// How many of the checks that are not up to send, down ones first (at most 2,000).
    public var limit: Int
    public init(limit: Int = 500) { self.limit = limit }
}

public struct HealthSummaryReply: Codable, Sendable, Equatable {
    public var up: Int
    public var down: Int
    public var unknown: Int
    /// Every node that has checks, by name.
    public var nodes: [NodeHealthTally]
    /// Checks that are down, then unknown, each in id order; the first `limit`.
    public var notUp: [CheckStatus]
    public init(up: Int, down: Int, unknown: Int, nodes: [NodeHealthTally], notUp: [CheckStatus]) {
        self.up = up
        self.down = down
        self.unknown = unknown
        self.nodes = nodes
        self.notUp = notUp
    }

    public var total: Int { up + down + unknown }
}
