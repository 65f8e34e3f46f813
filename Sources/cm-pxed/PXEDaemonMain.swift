import ArgumentParser
import CMDaemon

@main
struct PXEDaemonCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cm-pxed",
        abstract: "ClusterMaker network boot: DHCP/proxyDHCP, TFTP, HTTP boot, node discovery and inventory.",
        discussion: "See cm-pxed(8) and pxed.toml(5).",
        version: PXEDaemon.version)

    @OptionGroup var options: DaemonOptions

    func run() async throws {
        let status = await DaemonRunner.main(PXEDaemon.self, options: options)
        if status != 0 { throw ExitCode(status) }
    }
}
