import ArgumentParser
import CMTypes
import CMWire
import Foundation

struct Metrics: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show a node's performance series (CPU, memory, load, network, disk).")

    @OptionGroup var global: GlobalOptions
    @Argument(help: ArgumentHelp("The node.", valueName: "node")) var node: String
    @Option(help: ArgumentHelp("How far back, e.g. 15m, 1h, 7d.", valueName: "duration")) var since: String = "1h"
    @Option(parsing: .upToNextOption, help: ArgumentHelp("Only these series (e.g. cpu_percent mem_percent).", valueName: "name"))
    var series: [String] = []

    func validate() throws {
        if DurationText.parse(since) == nil { throw ValidationError("--since: \"\(since)\" is not a duration (e.g. 15m, 1h, 7d)") }
    }

    func run() async throws {
        try await reportingErrors {
            let span = DurationText.parse(since) ?? .seconds(3600)
            let query = MetricsQuery(node: NodeName(node), since: Date().addingTimeInterval(-span.seconds), series: series.isEmpty ? nil : series)
            let reply = try await global.call(.healthd) { conn in
                try await conn.request(MessageType.metricsQuery, query, as: MetricsReply.self)
            }
            if global.json { return try printJSON(reply) }
            print("node \(reply.node): last scrape \(reply.lastScrape.map(Format.time) ?? "never")\(reply.lastError.map { " (error: \($0))" } ?? "")")
            var table = Table("SERIES", "RES", "POINTS", "LAST", "MIN", "AVG", "MAX")
            for s in reply.series {
                let values = s.points.map(\.v)
                guard let last = values.last else {
                    table.add(s.name, s.resolution, "0", "-", "-", "-", "-")
                    continue
                }
                let avg = values.reduce(0, +) / Double(values.count)
                table.add(s.name, s.resolution, String(values.count), Format.number(last), Format.number(values.min() ?? last),
                          Format.number(avg), Format.number(values.max() ?? last))
            }
            print(table.render())
        }
    }
}
