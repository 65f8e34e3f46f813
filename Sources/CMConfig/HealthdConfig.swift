import CMTypes
import Foundation

public struct HTTPCheck: Sendable, Equatable {
    public var tls: Bool
    public var port: Int
    public var path: String
    public var host: String?
    /// Empty: any 2xx or 3xx.
    public var expectStatus: [Int]
    public var expectBody: String?
    public var tlsVerify: Bool
}

public enum CheckKind: Sendable, Equatable {
    case icmp
    case tcp(port: Int)
    case http(HTTPCheck)
    case exec(command: [String])

    /// The `type` value it was written as.
    public var name: String {
        switch self {
        case .icmp: return "icmp"
        case .tcp: return "tcp"
        case .http(let h): return h.tls ? "https" : "http"
        case .exec: return "exec"
        }
    }
}

public enum CheckTarget: Sendable, Equatable {
    case all
    case group(String)
    case node(NodeName)
}

public struct CheckConfig: Sendable, Equatable {
    public var name: String
    public var kind: CheckKind
    public var targets: [CheckTarget]
    public var interval: Duration
    public var timeout: Duration
    public var rise: Int
    public var fall: Int
    public var jitterPercent: Int

    public init(name: String, kind: CheckKind, targets: [CheckTarget], interval: Duration, timeout: Duration, rise: Int, fall: Int, jitterPercent: Int) {
        self.name = name
        self.kind = kind
        self.targets = targets
        self.interval = interval
        self.timeout = timeout
        self.rise = rise
        self.fall = fall
        self.jitterPercent = jitterPercent
    }
}

public struct HealthdConfig: Sendable, Equatable {
    public struct Daemon: Sendable, Equatable {
        public var maxInFlight = 1024
        /// Check cm-pxed's inventory nodes too (those with an address), following its changes.
        public var followPxed = true
        public var historyRetention: Duration = .seconds(30 * 86_400)
    }

    public struct Defaults: Sendable, Equatable {
        public var interval: Duration = .seconds(2)
        public var timeout: Duration = .seconds(1)
        public var rise = 2
        public var fall = 3
        public var jitterPercent = 10
    }

    public struct Metrics: Sendable, Equatable {
        public var enabled = true
        public var port = 9100
        public var path = "/metrics"
        public var interval: Duration = .seconds(15)
        public var timeout: Duration = .seconds(5)
        public var rawRetention: Duration = .seconds(6 * 3600)
        public var minuteRetention: Duration = .seconds(7 * 86_400)
        public var hourRetention: Duration = .seconds(90 * 86_400)
    }

    public var healthd = Daemon()
    public var defaults = Defaults()
    public var metrics = Metrics()
    public var checks: [CheckConfig] = []

    /// Everything at its documented default, no checks.
    public init() {}

    public static let fileName = "healthd.toml"

    public static func load(configDir: String, cluster: ClusterConfig) throws(ConfigErrors) -> HealthdConfig {
        try parse(ConfigSource.read((configDir as NSString).appendingPathComponent(fileName)), cluster: cluster)
    }

    /// Every (check, node) pair to run, without duplicates, ordered by node then check.
    public func instances(of cluster: ClusterConfig) -> [(CheckConfig, NodeConfig)] {
        var out: [(CheckConfig, NodeConfig)] = []
        for node in cluster.nodes {
            for check in checks where check.targets.contains(where: { target in
                switch target {
                case .all: return true
                case .group(let g): return node.groups.contains(g)
                case .node(let n): return n == node.name
                }
            }) {
                out.append((check, node))
            }
        }
        return out
    }

    static let day: Int64 = 86_400

    public static func parse(_ source: ConfigSource, cluster: ClusterConfig) throws(ConfigErrors) -> HealthdConfig {
        let doc = try ConfigDocument(source)
        let root = doc.rootReader
        var config = HealthdConfig()

        let h = root.table("healthd")
        config.healthd.maxInFlight = h.int("max_in_flight", range: 1...100_000, default: 1024)
        config.healthd.followPxed = h.bool("follow_pxed", default: true)
        config.healthd.historyRetention = h.duration("history_retention", range: .seconds(3600) ... .seconds(3650 * day), default: .seconds(30 * day))
        h.finish()

        let d = root.table("defaults")
        config.defaults.interval = d.duration("interval", range: .milliseconds(100) ... .seconds(3600), default: .seconds(2))
        config.defaults.timeout = d.duration("timeout", range: .milliseconds(10) ... .seconds(3600), default: min(.seconds(1), config.defaults.interval))
        if config.defaults.timeout > config.defaults.interval {
            d.error("timeout", "\(DurationText.format(config.defaults.timeout)) is longer than interval \(DurationText.format(config.defaults.interval))")
        }
        config.defaults.rise = d.int("rise", range: 1...100, default: 2)
        config.defaults.fall = d.int("fall", range: 1...100, default: 3)
        config.defaults.jitterPercent = d.percent("jitter", range: 0...50, default: 10)
        d.finish()

        let m = root.table("metrics")
        config.metrics.enabled = m.bool("enabled", default: true)
        config.metrics.port = m.int("port", range: 1...65535, default: 9100)
        config.metrics.path = m.string("path", default: "/metrics")
        if !config.metrics.path.hasPrefix("/") { m.error("path", "must start with \"/\"") }
        config.metrics.interval = m.duration("interval", range: .seconds(1) ... .seconds(3600), default: .seconds(15))
        config.metrics.timeout = m.duration("timeout", range: .milliseconds(10) ... .seconds(3600), default: min(.seconds(5), config.metrics.interval))
        if config.metrics.timeout > config.metrics.interval {
            m.error("timeout", "\(DurationText.format(config.metrics.timeout)) is longer than interval \(DurationText.format(config.metrics.interval))")
        }
        let retention: ClosedRange<Duration> = .seconds(60) ... .seconds(3650 * day)
        config.metrics.rawRetention = m.duration("raw_retention", range: retention, default: .seconds(6 * 3600))
        config.metrics.minuteRetention = m.duration("minute_retention", range: retention, default: .seconds(7 * day))
        config.metrics.hourRetention = m.duration("hour_retention", range: retention, default: .seconds(90 * day))
        if config.metrics.rawRetention > config.metrics.minuteRetention {
            m.error("raw_retention", "longer than minute_retention \(DurationText.format(config.metrics.minuteRetention))")
        }
        if config.metrics.minuteRetention > config.metrics.hourRetention {
            m.error("minute_retention", "longer than hour_retention \(DurationText.format(config.metrics.hourRetention))")
        }
        m.finish()

        let nodeNames = Set(cluster.nodes.map(\.name))
        let groups = Set(cluster.nodes.flatMap(\.groups))
        var seen = Set<String>()
        for t in root.tables("check") {
            if let check = parseCheck(t, defaults: config.defaults, nodeNames: nodeNames, groups: groups) {
                if !seen.insert(check.name).inserted {
                    t.error("name", "duplicate check name \"\(check.name)\"")
                } else {
                    config.checks.append(check)
                }
            }
            t.finish()
        }
        root.finish()
        try doc.check()
        return config
    }

    static func parseCheck(_ t: TableReader, defaults: Defaults, nodeNames: Set<NodeName>, groups: Set<String>) -> CheckConfig? {
        let name = t.string("name", required: true)
        if let name {
            t.label = "check \"\(name)\""
            let valid = (1...64).contains(name.utf8.count) && name.utf8.allSatisfy {
                TOMLPositions.isBare($0) || $0 == UInt8(ascii: ".")
            }
            if !valid { t.error("name", "\"\(name)\" is not a valid check name (1-64 of A-Z, a-z, 0-9, \"_\", \".\", \"-\")") }
        }
        let type = t.string("type", required: true)
        // Which keys each type takes, so that a key of another type is an error, not ignored.
        let typeKeys: [String: Set<String>] = [
            "icmp": [], "tcp": ["port"], "http": ["port", "path", "host", "expect_status", "expect_body"],
            "https": ["port", "path", "host", "expect_status", "expect_body", "tls_verify"], "exec": ["command"],
        ]
        let allTypeKeys: Set<String> = ["port", "path", "host", "expect_status", "expect_body", "tls_verify", "command"]
        var kind: CheckKind?
        if let type {
            guard let own = typeKeys[type] else {
                t.error("type", "\"\(type)\" is not a check type (icmp, tcp, http, https, exec)")
                for key in allTypeKeys { _ = t.has(key) }
                return nil
            }
            for key in allTypeKeys.subtracting(own).sorted() where t.has(key) {
                t.error(key, "not used by \(type) checks")
            }
            switch type {
            case "icmp":
                kind = .icmp
            case "tcp":
                if let port = t.int("port", range: 1...65535, required: true) { kind = .tcp(port: port) }
            case "http", "https":
                let tls = type == "https"
                let port = t.int("port", range: 1...65535, required: true)
                let path = t.string("path", default: "/")
                if !path.hasPrefix("/") { t.error("path", "must start with \"/\"") }
                let host = t.string("host")
                let expectStatus = t.intArray("expect_status", range: 100...599) ?? []
                let expectBody = t.string("expect_body")
                let tlsVerify = tls ? t.bool("tls_verify", default: true) : true
                if let port { kind = .http(HTTPCheck(tls: tls, port: port, path: path, host: host, expectStatus: expectStatus, expectBody: expectBody, tlsVerify: tlsVerify)) }
            default:
                if let command = t.stringArray("command") {
                    if command.isEmpty {
                        t.error("command", "must name a program")
                    } else if !command[0].hasPrefix("/") {
                        t.error("command", "\"\(command[0])\" must be an absolute path (there is no shell and no PATH search)")
                    } else {
                        kind = .exec(command: command)
                    }
                } else if !t.has("command") {
                    t.tableError("missing required key \"command\"")
                }
            }
        }

        var targets: [CheckTarget] = []
        for entry in t.stringArray("nodes") ?? ["*"] {
            if entry == "*" {
                targets.append(.all)
            } else if entry.hasPrefix("group:") {
                let g = String(entry.dropFirst(6))
                if groups.contains(g) { targets.append(.group(g)) } else { t.error("nodes", "no node is in group \"\(g)\"") }
            } else if nodeNames.contains(NodeName(entry)) {
                targets.append(.node(NodeName(entry)))
            } else {
                t.error("nodes", "unknown node \"\(entry)\"")
            }
        }

        let interval = t.duration("interval", range: .milliseconds(100) ... .seconds(3600), default: defaults.interval)
        let timeout = t.duration("timeout", range: .milliseconds(10) ... .seconds(3600), default: min(defaults.timeout, interval))
        if timeout > interval {
            t.error(t.has("timeout") ? "timeout" : "interval", "timeout \(DurationText.format(timeout)) is longer than interval \(DurationText.format(interval))")
        }
        let rise = t.int("rise", range: 1...100, default: defaults.rise)
        let fall = t.int("fall", range: 1...100, default: defaults.fall)
        let jitter = t.percent("jitter", range: 0...50, default: defaults.jitterPercent)
        guard let name, let kind else { return nil }
        return CheckConfig(name: name, kind: kind, targets: targets, interval: interval, timeout: timeout, rise: rise, fall: fall, jitterPercent: jitter)
    }
}
