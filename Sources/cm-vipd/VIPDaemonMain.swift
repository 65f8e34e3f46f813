import ArgumentParser
import CMDaemon

@main
struct VIPDaemonCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cm-vipd",
        abstract: "ClusterMaker virtual IPs: VRRPv3 (RFC 5798), gratuitous ARP, this master's role.",
        discussion: "See cm-vipd(8) and vipd.toml(5).",
        version: VIPDaemon.version)

    @OptionGroup var options: DaemonOptions

    func run() async throws {
        let status = await DaemonRunner.main(VIPDaemon.self, options: options)
        if status != 0 { throw ExitCode(status) }
    }
}
