import ArgumentParser
import CMDaemon

@main
struct LBDaemonCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cm-lbd",
        abstract: "ClusterMaker load balancer: TCP and HTTP/1.1 frontends over backend pools that follow cm-healthd.",
        discussion: "See cm-lbd(8) and lbd.toml(5).",
        version: LBDaemon.version)

    @OptionGroup var options: DaemonOptions

    func run() async throws {
        let status = await DaemonRunner.main(LBDaemon.self, options: options)
        if status != 0 { throw ExitCode(status) }
    }
}
