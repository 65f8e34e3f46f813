import ArgumentParser
import CMDaemon

@main
struct ReplicaDaemonCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cm-replicad",
        abstract: "ClusterMaker cluster filesystem: the GlusterFS volume and nfs-ganesha's exports of the node images and /shared.",
        discussion: "See cm-replicad(8) and replicad.toml(5).",
        version: ReplicaDaemon.version)

    @OptionGroup var options: DaemonOptions

    func run() async throws {
        let status = await DaemonRunner.main(ReplicaDaemon.self, options: options)
        if status != 0 { throw ExitCode(status) }
    }
}
