import ArgumentParser
import CMWire
import Foundation

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show every daemon of the suite: reachable, version, one-line status.",
        discussion: "Exits 3 when a daemon that has a config file in the config dir does not answer.")

    @OptionGroup var global: GlobalOptions

    @Option(name: .long, help: ArgumentHelp("Directory holding the daemons' config files.", valueName: "dir"))
    var configDir: String = "/etc/clustermaker"

    struct Row: Encodable {
        var daemon: String
        var configured: Bool
        var running: Bool
        var version: String?
        var pid: Int32?
        var status: String
    }

    func run() async throws {
        var rows: [Row] = []
        for daemon in SuiteDaemon.all {
            let configured = FileManager.default.fileExists(atPath: (configDir as NSString).appendingPathComponent(daemon.configFile))
            do {
                let status = try await WireClient.withConnection(path: global.socket(daemon), daemon: daemon.name, peer: "cmctl") { conn in
                    try await conn.request(MessageType.status, Empty(), as: DaemonStatus.self)
                }
                rows.append(Row(daemon: daemon.name, configured: configured, running: true, version: status.version, pid: status.pid, status: status.status))
            } catch let error as WireError {
                let text: String
                switch error.code {
                case .notRunning: text = configured ? "not running" : "not configured"
                default: text = error.message
                }
                rows.append(Row(daemon: daemon.name, configured: configured, running: false, version: nil, pid: nil, status: text))
            }
        }
        if global.json {
            try printJSON(rows)
        } else {
            var table = Table("DAEMON", "STATE", "VERSION", "PID", "STATUS")
            for r in rows {
                table.add(r.daemon, r.running ? "running" : (r.configured ? "down" : "-"), r.version ?? "-", r.pid.map(String.init) ?? "-", r.status)
            }
            print(table.render())
        }
        if rows.contains(where: { $0.configured && !$0.running }) { throw ExitCode(3) }
    }
}
