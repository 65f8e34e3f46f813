import ArgumentParser
import Logging

/// The options every daemon takes (DESIGN.md "Command line").
public struct DaemonOptions: ParsableArguments, Sendable {
    @Option(name: .long, help: ArgumentHelp("Directory holding cluster.toml and the daemon's config file.", valueName: "dir"))
    public var configDir: String = "/etc/clustermaker"

    @Option(name: .long, help: ArgumentHelp("Directory for the daemon's database (default /var/lib/clustermaker/<daemon>).", valueName: "dir"))
    public var stateDir: String?

    @Option(name: .long, help: ArgumentHelp("Directory of the control sockets.", valueName: "dir"))
    public var runtimeDir: String = "/run/clustermaker"

    @Flag(name: .long, help: "Validate the configuration, print any errors and exit (0 valid, 1 errors).")
    public var checkConfig = false

    @Option(name: .long, help: ArgumentHelp("trace, debug, info, notice, warning, error or critical.", valueName: "level"))
    public var logLevel: String = "info"

    @Option(name: .long, help: ArgumentHelp("auto (journal when stderr is the journal), journal or stderr.", valueName: "target"))
    public var logTarget: String = "auto"

    public init() {}

    public func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level: \"\(logLevel)\" is not one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard LogTarget(rawValue: logTarget) != nil else {
            throw ValidationError("--log-target: \"\(logTarget)\" is not one of auto, journal, stderr")
        }
    }

    public var level: Logger.Level { Logger.Level(rawValue: logLevel) ?? .info }
    public var target: LogTarget { LogTarget(rawValue: logTarget) ?? .auto }

    public func stateDirectory(daemon: String) -> String {
        stateDir ?? "/var/lib/clustermaker/\(daemon.hasPrefix("cm-") ? String(daemon.dropFirst(3)) : daemon)"
    }
}
