import ArgumentParser
import CMTypes
import CMWire
import Foundation

struct Health: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Health checks of cm-healthd.",
        subcommands: [List.self, Summary.self, Show.self, History.self, Watch.self],
        defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List every check instance and its state.")
        @OptionGroup var global: GlobalOptions
        @Option(help: ArgumentHelp("Only this node's checks.", valueName: "node")) var node: String?
        @Option(help: ArgumentHelp("Only checks in this state: up, down or unknown.", valueName: "state")) var state: HealthState?

        func run() async throws {
            try await reportingErrors {
                let checks = try await global.call(.healthd) { conn in
                    try await conn.requestAll(MessageType.healthList, HealthListRequest(node: node.map { NodeName($0) }, state: state), as: HealthListReply.self)
                }
                if global.json { return try printJSON(checks) }
                var table = Table("CHECK", "NODE", "TYPE", "STATE", "SINCE", "LAST RESULT")
                for c in checks {
                    table.add(c.id.check, c.id.node.rawValue, c.type, c.state.rawValue, Format.age(since: c.since), c.lastProbe?.message ?? "-")
                }
                print(table.render())
            }
        }
    }

    struct Summary: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Counts by state and the nodes whose checks are not all up.",
            discussion: "One answer however many checks there are (the web console's overview uses it).")
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await reportingErrors {
                let s = try await global.call(.healthd) { try await $0.request(MessageType.healthSummary, HealthSummaryRequest(limit: 0), as: HealthSummaryReply.self) }
                if global.json { return try printJSON(s) }
                print("\(s.total) checks: \(s.up) up, \(s.down) down, \(s.unknown) unknown; \(s.nodes.count) nodes")
                let bad = s.nodes.filter { $0.health != .up }
                guard !bad.isEmpty else { return }
                var table = Table("NODE", "HEALTH", "DOWN", "UNKNOWN", "CHECKS")
                for n in bad { table.add(n.node.rawValue, n.health.rawValue, String(n.down), String(n.unknown), String(n.checks)) }
                print(table.render())
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one check instance in detail.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: ArgumentHelp("The check instance, CHECK@NODE.", valueName: "check@node")) var id: CheckID

        func run() async throws {
            try await reportingErrors {
                let reply = try await global.call(.healthd) { conn in
                    try await conn.request(MessageType.healthShow, HealthShowRequest(id: id), as: HealthShowReply.self)
                }
                if global.json { return try printJSON(reply) }
                let c = reply.check
                var lines = [
                    "check:      \(c.id)",
                    "type:       \(c.type) \(c.address)",
                    "state:      \(c.state.rawValue) (since \(c.since.map(Format.time) ?? "start"))",
                    "counters:   \(c.consecutiveSuccesses) successes, \(c.consecutiveFailures) failures in a row (rise \(c.rise), fall \(c.fall))",
                    "interval:   \(DurationText.format(.milliseconds(c.intervalMs))), timeout \(DurationText.format(.milliseconds(c.timeoutMs)))",
                ]
                if let p = c.lastProbe {
                    lines.append("last probe: \(Format.time(p.at)) \(p.ok ? "ok" : "failed"): \(p.message) (\(String(format: "%.1f", p.latencyMs)) ms)")
                }
                print(lines.joined(separator: "\n"))
                if !reply.recent.isEmpty {
                    print("\nrecent transitions:")
                    print(transitionTable(reply.recent).render())
                }
            }
        }
    }

    struct History: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show past state transitions, newest first.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: ArgumentHelp("Only this check instance, CHECK@NODE.", valueName: "check@node")) var id: CheckID?
        @Option(help: ArgumentHelp("Only transitions newer than this, e.g. 1h, 30m, 7d.", valueName: "duration")) var since: String?
        @Option(help: ArgumentHelp("At most this many transitions.", valueName: "n")) var limit: Int = 50

        func validate() throws {
            if let since, DurationText.parse(since) == nil { throw ValidationError("--since: \"\(since)\" is not a duration (e.g. 30m, 1h, 7d)") }
            guard (1...100_000).contains(limit) else { throw ValidationError("--limit: must be 1…100000") }
        }

        func run() async throws {
            try await reportingErrors {
                let from = since.flatMap(DurationText.parse).map { Date().addingTimeInterval(-$0.seconds) }
                let transitions = try await global.call(.healthd) { conn in
                    try await conn.requestAll(MessageType.healthHistory, HealthHistoryRequest(id: id, since: from, limit: limit), as: HealthHistoryReply.self, limit: limit)
                }
                if global.json { return try printJSON(transitions) }
                print(transitionTable(transitions).render())
            }
        }
    }

    struct Watch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stream state transitions as they happen, until interrupted.")
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await reportingErrors {
                try await global.call(.healthd) { conn in
                    try await conn.subscribe(topics: [Topic.health])
                    announceWatching("cm-healthd transitions", json: global.json)
                    while let event = try await conn.nextEvent() {
                        guard event.header.type == MessageType.healthTransition else { continue }
                        let t = try event.body(as: HealthTransition.self)
                        if global.json {
                            try printJSONLine(t)
                        } else {
                            print("\(Format.time(t.at))  \(t.id)  \(t.from.rawValue) -> \(t.to.rawValue)  \(t.message)")
                            fflush(nil)
                        }
                    }
                    throw CLIError.failed("cm-healthd closed the connection")
                }
            }
        }
    }
}

func transitionTable(_ transitions: [HealthTransition]) -> Table {
    var table = Table("TIME", "CHECK", "FROM", "TO", "MESSAGE")
    for t in transitions { table.add(Format.time(t.at), t.id.description, t.from.rawValue, t.to.rawValue, t.message) }
    return table
}

extension CheckID: ExpressibleByArgument {
    public init?(argument: String) { self.init(argument) }
}

extension HealthState: ExpressibleByArgument {}
