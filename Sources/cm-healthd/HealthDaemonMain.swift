import ArgumentParser
import CMDaemon
import CMHealth

@main
struct HealthDaemonCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cm-healthd",
        abstract: "ClusterMaker health monitor: probes nodes and services, scrapes node metrics.",
        discussion: "See cm-healthd(8) and healthd.toml(5).",
        version: HealthDaemon.version)

    @OptionGroup var options: DaemonOptions

    func run() async throws {
        let status = await DaemonRunner.main(HealthDaemon.self, options: options)
        if status != 0 { throw ExitCode(status) }
    }
}
