import ArgumentParser
import CMConfig
import Foundation

struct Config: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate configuration files without contacting any daemon.",
        subcommands: [Check.self],
        defaultSubcommand: Check.self)

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate cluster.toml and every daemon's config file in the config dir.",
            discussion: "Prints FILE:LINE:COLUMN: KEY: MESSAGE for each problem and exits 1; prints nothing and exits 0 when all is valid.")

        @Option(name: .long, help: ArgumentHelp("Directory holding cluster.toml and the daemons' files.", valueName: "dir"))
        var configDir: String = "/etc/clustermaker"

        @Flag(name: .long, help: "Print the result as JSON.")
        var json = false

        struct Result: Encodable {
            var file: String
            var valid: Bool
            var errors: [String]
        }

        func run() async throws {
            var results: [Result] = []
            let dir = configDir as NSString
            func record(_ file: String, _ work: () throws(ConfigErrors) -> Void) {
                do throws(ConfigErrors) {
                    try work()
                    results.append(Result(file: dir.appendingPathComponent(file), valid: true, errors: []))
                } catch {
                    results.append(Result(file: dir.appendingPathComponent(file), valid: false, errors: error.errors.map(\.description)))
                }
            }
            var cluster: ClusterConfig?
            record(ClusterConfig.fileName) { () throws(ConfigErrors) in cluster = try ClusterConfig.load(configDir: configDir) }
            if let cluster, FileManager.default.fileExists(atPath: dir.appendingPathComponent(HealthdConfig.fileName)) {
                record(HealthdConfig.fileName) { () throws(ConfigErrors) in _ = try HealthdConfig.load(configDir: configDir, cluster: cluster) }
            }
            if FileManager.default.fileExists(atPath: dir.appendingPathComponent(LbdConfig.fileName)) {
                record(LbdConfig.fileName) { () throws(ConfigErrors) in _ = try LbdConfig.load(configDir: configDir) }
            }
            if FileManager.default.fileExists(atPath: dir.appendingPathComponent(VipdConfig.fileName)) {
                record(VipdConfig.fileName) { () throws(ConfigErrors) in _ = try VipdConfig.load(configDir: configDir) }
            }
            if FileManager.default.fileExists(atPath: dir.appendingPathComponent(PxedConfig.fileName)) {
                record(PxedConfig.fileName) { () throws(ConfigErrors) in _ = try PxedConfig.load(configDir: configDir) }
            }
            if FileManager.default.fileExists(atPath: dir.appendingPathComponent(ReplicadConfig.fileName)) {
                record(ReplicadConfig.fileName) { () throws(ConfigErrors) in _ = try ReplicadConfig.load(configDir: configDir) }
            }
            if FileManager.default.fileExists(atPath: dir.appendingPathComponent(SnapdConfig.fileName)) {
                record(SnapdConfig.fileName) { () throws(ConfigErrors) in _ = try SnapdConfig.load(configDir: configDir) }
            }
            if FileManager.default.fileExists(atPath: dir.appendingPathComponent(WebdConfig.fileName)) {
                record(WebdConfig.fileName) { () throws(ConfigErrors) in _ = try WebdConfig.load(configDir: configDir) }
            }
            if json {
                try printJSON(results)
            } else {
                for r in results { for e in r.errors { print(e) } }
            }
            if results.contains(where: { !$0.valid }) { throw ExitCode(1) }
        }
    }
}
