import ArgumentParser
import CMDaemon

@main
struct WebDaemonCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cm-webd",
        abstract: "ClusterMaker web console: the cluster's state, charts and actions in a browser, a JSON API and /metrics.",
        discussion: "See cm-webd(8) and webd.toml(5).",
        version: WebDaemon.version)

    @OptionGroup var options: DaemonOptions

    func run() async throws {
        let status = await DaemonRunner.main(WebDaemon.self, options: options)
        if status != 0 { throw ExitCode(status) }
    }
}
