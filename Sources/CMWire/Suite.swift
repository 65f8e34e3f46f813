import Foundation

/// The suite's daemons: one table that every daemon, cmctl and the tests take names, control
/// sockets and config files from, so that no file spells "healthd.sock" on its own.
public struct SuiteDaemon: Sendable, Equatable {
    /// "healthd": the socket, config file and state directory are named after it.
    public let short: String

    public init(short: String) { self.short = short }

    /// "cm-healthd".
    public var name: String { "cm-\(short)" }
    /// "healthd.sock", under the runtime directory.
    public var socketName: String { "\(short).sock" }
    /// "healthd.toml", under the config directory.
    public var configFile: String { "\(short).toml" }

    public func socketPath(runtimeDirectory: String) -> String {
        (runtimeDirectory as NSString).appendingPathComponent(socketName)
    }

    public static let healthd = SuiteDaemon(short: "healthd")
    public static let lbd = SuiteDaemon(short: "lbd")
    public static let vipd = SuiteDaemon(short: "vipd")
    public static let pxed = SuiteDaemon(short: "pxed")
    public static let snapd = SuiteDaemon(short: "snapd")
    public static let replicad = SuiteDaemon(short: "replicad")
    public static let webd = SuiteDaemon(short: "webd")

    /// In the order `cmctl status` lists them.
    public static let all = [healthd, lbd, vipd, pxed, snapd, replicad, webd]
}

/// The suite's version: every daemon's hello and `cmctl --version`.
public enum ClusterMakerVersion {
    public static let string = "0.1.0"
}
