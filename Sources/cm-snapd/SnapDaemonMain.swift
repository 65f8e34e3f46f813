import ArgumentParser
import CMDaemon

@main
struct SnapDaemonCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cm-snapd",
        abstract: "ClusterMaker snapshots: restore points of the master's state and online snapshots of data sets and databases.",
        discussion: "See cm-snapd(8) and snapd.toml(5).",
        version: SnapDaemon.version)

    @OptionGroup var options: DaemonOptions

    func run() async throws {
        let status = await DaemonRunner.main(SnapDaemon.self, options: options)
        if status != 0 { throw ExitCode(status) }
    }
}
