import ArgumentParser
import CMWire
import Foundation

struct Lb: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load balancing (cm-lbd): frontends, backend pools, draining.",
        subcommands: [Status.self, Metrics.self, Drain.self, Undrain.self, Watch.self],
        defaultSubcommand: Status.self)

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show every frontend (connections, requests, req/s, errors) and every server (state, connections, failures).")

        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await reportingErrors {
                let reply = try await global.call(.lbd) { conn in
                    try await conn.request(MessageType.lbStatus, Empty(), as: LbStatusReply.self)
                }
                if global.json { return try printJSON(reply) }
                var frontends = Table("FRONTEND", "LISTEN", "MODE", "BACKEND", "ACTIVE", "TOTAL", "REQUESTS", "REQ/S", "ERRORS", "RETRIES")
                for f in reply.frontends {
                    frontends.add(f.name, f.listen.description, f.mode, f.backend, String(f.active), String(f.total), String(f.requests),
                                  String(format: "%.0f", f.requestsPerSecond), String(f.errors), String(f.retries))
                }
                print(frontends.render())
                print()
                var servers = Table("BACKEND", "SERVER", "NODE", "WEIGHT", "STATE", "ACTIVE", "TOTAL", "FAILURES")
                for b in reply.backends {
                    for s in b.servers {
                        let weight = s.backup ? "\(s.weight) backup" : String(s.weight)
                        let active = s.maxConnections > 0 ? "\(s.active)/\(s.maxConnections)" : String(s.active)
                        servers.add("\(b.name) (\(b.algorithm))", s.address.description, s.node, weight, s.state.rawValue, active, String(s.total), String(s.failures))
                    }
                }
                print(servers.render())
            }
        }
    }

    struct Metrics: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print cm-lbd's counters in Prometheus' text format.",
            discussion: "Frontends' connections, requests, errors and retries; each server's state, weight, connections and failed connects; each event loop's connections. Counters count since cm-lbd started. For Prometheus without cm-webd, write them where prometheus-node-exporter's textfile collector reads (see cm-lbd(8), section Metrics).")

        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await reportingErrors {
                let reply = try await global.call(.lbd) { conn in
                    try await conn.request(MessageType.lbMetrics, Empty(), as: LbMetricsReply.self)
                }
                if global.json { return try printJSON(reply) }
                print(reply.text, terminator: "")
            }
        }
    }

    struct Drain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send no new connections to a node's servers; open connections finish.",
            discussion: "NODE is a node name as lbd.toml's `node` gives it, or a server's ADDRESS[:PORT]. Every backend's matching servers are drained until `cmctl lb undrain`, across reloads of cm-lbd (not across its restart).")

        @OptionGroup var global: GlobalOptions
        @Argument(help: "Node name or server address.") var node: String

        func run() async throws { try await reportingErrors { try await setDrain(node, true, global) } }
    }

    struct Undrain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Give a drained node's servers new connections again.")

        @OptionGroup var global: GlobalOptions
        @Argument(help: "Node name or server address.") var node: String

        func run() async throws { try await reportingErrors { try await setDrain(node, false, global) } }
    }

    struct Watch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stream servers leaving and rejoining pools until interrupted.")

        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await reportingErrors {
                try await global.call(.lbd) { conn in
                    try await conn.subscribe(topics: [Topic.lb])
                    announceWatching("cm-lbd", json: global.json)
                    while let event = try await conn.nextEvent() {
                        guard event.header.type == MessageType.lbServer else { continue }
                        let c = try event.body(as: LbServerChange.self)
                        if global.json {
                            try printJSONLine(c)
                        } else {
                            print("\(Format.time(c.at))  \(c.backend)/\(c.address)  \(c.node)  \(c.state.rawValue)  \(c.reason)")
                        }
                        fflush(nil)
                    }
                    throw CLIError.failed("cm-lbd closed the connection")
                }
            }
        }
    }
}

private func setDrain(_ target: String, _ drain: Bool, _ global: GlobalOptions) async throws {
    let reply = try await global.call(.lbd) { conn in
        try await conn.request(MessageType.lbDrain, LbDrainRequest(target: target, drain: drain), as: LbDrainReply.self)
    }
    if global.json { return try printJSON(reply) }
    print("\(drain ? "drained" : "undrained"): \(reply.servers.joined(separator: ", "))")
}
