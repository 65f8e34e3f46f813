import CMWire
import Foundation
import Logging
import NIOPosix

/// What a daemon plugs into the shared lifecycle. The runner owns everything systemd sees
/// (readiness, status, watchdog, reload, stop); the daemon owns its concern.
public protocol Daemon: Sendable {
    associatedtype Configuration: Sendable

    /// Which daemon of the suite this is: its name, control socket and config file.
    static var suite: SuiteDaemon { get }

    /// Reads and validates the whole configuration; throws errors that print as
    /// `FILE:LINE:COLUMN: KEY: MESSAGE`, one per line.
    static func loadConfiguration(configDir: String) throws -> Configuration

    static func make(configuration: Configuration, options: DaemonOptions, events: EventHub, logger: Logger) async throws -> Self

    func routes(into router: inout WireRouter)
    /// The daemon's work; returns or throws only when cancelled or on a fatal error.
    func run() async throws
    /// Applies a new, already validated configuration (SIGHUP).
    func apply(_ configuration: Configuration) async throws
    /// One line for STATUS= and `cmctl status`.
    var statusLine: String { get }
    /// Last words after the work is cancelled: flush state.
    func shutdown() async
}

extension Daemon {
    /// "cm-healthd".
    public static var name: String { suite.name }
    /// Socket file name under the runtime dir, "healthd.sock".
    public static var socketName: String { suite.socketName }
    public static var version: String { ClusterMakerVersion.string }
}

public enum DaemonRunner {
    enum Outcome: Sendable {
        case stop
        case failed(String)
    }

    /// Runs `D` until SIGTERM/SIGINT; returns the process exit status.
    public static func main<D: Daemon>(_: D.Type, options: DaemonOptions) async -> Int32 {
        DaemonLogging.bootstrap(daemon: D.name, level: options.level, target: options.checkConfig ? .stderr : options.target)
        let logger = Logger(label: D.name)

        let configuration: D.Configuration
        do {
            configuration = try D.loadConfiguration(configDir: options.configDir)
        } catch {
            reportConfigurationError(error, daemon: D.name, logger: logger, toStderr: options.checkConfig)
            return 1
        }
        if options.checkConfig {
            print("\(D.name): configuration in \(options.configDir) is valid")
            return 0
        }

        raiseFileLimit(logger: logger)
        let notifier = SystemdNotifier()
        notifier.status("starting")
        let signals = SignalStream([SIGHUP, SIGTERM, SIGINT])
        let events = EventHub()
        let daemon: D
        do {
            daemon = try await D.make(configuration: configuration, options: options, events: events, logger: logger)
        } catch {
            logger.critical("cannot start: \(error)")
            return 1
        }
        var router = WireRouter()
        daemon.routes(into: &router)

        let socketPath = (options.runtimeDir as NSString).appendingPathComponent(D.socketName)
        let listener: WireServer.Listener
        if let fd = ListenFDs.passed.socket(named: "control") {
            listener = .descriptor(fd, path: socketPath)
        } else {
            do {
                try FileManager.default.createDirectory(atPath: options.runtimeDir, withIntermediateDirectories: true)
            } catch {
                logger.critical("cannot create runtime directory \(options.runtimeDir): \(error)")
                return 1
            }
            listener = .path(socketPath)
        }
        let startedAt = Date()
        let server = WireServer(daemon: D.name, version: D.version, router: router, events: events, logger: logger) {
            DaemonStatus(daemon: D.name, version: D.version, pid: getpid(), startedAt: startedAt, status: daemon.statusLine)
        }

        let outcome = await withTaskGroup(of: Outcome.self) { group -> Outcome in
            group.addTask {
                do {
                    try await server.run(listener: listener) {
                        if case .path(let path) = listener { restrictSocket(path, logger: logger) }
                        notifier.ready(status: daemon.statusLine)
                        logger.info("\(D.name) \(D.version) ready: \(daemon.statusLine)")
                    }
                    return .stop
                } catch is CancellationError {
                    return .stop
                } catch {
                    return .failed("control socket \(listener): \(error)")
                }
            }
            group.addTask {
                do {
                    try await daemon.run()
                    return Task.isCancelled ? .stop : .failed("\(D.name) stopped working")
                } catch is CancellationError {
                    return .stop
                } catch {
                    return Task.isCancelled ? .stop : .failed("\(error)")
                }
            }
            group.addTask {
                // Keep STATUS= (systemctl status) current as the daemon's state changes.
                var last = ""
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(2))
                    let line = daemon.statusLine
                    if line != last {
                        notifier.status(line)
                        last = line
                    }
                }
                return .stop
            }
            if let interval = notifier.watchdogPingInterval {
                group.addTask {
                    while !Task.isCancelled {
                        notifier.watchdog()
                        try? await Task.sleep(for: interval)
                    }
                    return .stop
                }
            }
            group.addTask {
                for await signal in signals.signals {
                    if signal == SIGHUP {
                        await reload(daemon, options: options, notifier: notifier, logger: logger)
                    } else {
                        logger.notice("received \(signal == SIGTERM ? "SIGTERM" : "SIGINT"), stopping")
                        return .stop
                    }
                }
                return .stop
            }
            let first = await group.next() ?? .stop
            notifier.stopping()
            group.cancelAll()
            events.finishAll()
            return first
        }
        await daemon.shutdown()
        if case .path(let path) = listener { unlink(path) }
        switch outcome {
        case .stop:
            logger.info("\(D.name) stopped")
            return 0
        case .failed(let reason):
            logger.critical("\(reason)")
            return 1
        }
    }

    static func reload<D: Daemon>(_ daemon: D, options: DaemonOptions, notifier: SystemdNotifier, logger: Logger) async {
        notifier.reloading()
        do {
            let configuration = try D.loadConfiguration(configDir: options.configDir)
            try await daemon.apply(configuration)
            logger.notice("configuration reloaded from \(options.configDir)")
        } catch {
            reportConfigurationError(error, daemon: D.name, logger: logger, toStderr: false)
            logger.error("reload refused: the previous configuration stays in force")
        }
        notifier.ready(status: daemon.statusLine)
    }

    static func reportConfigurationError(_ error: any Error, daemon: String, logger: Logger, toStderr: Bool) {
        let lines = "\(error)".split(separator: "\n").map(String.init)
        for line in lines {
            if toStderr {
                FileHandle.standardError.write(Data("\(daemon): \(line)\n".utf8))
            } else {
                logger.error("\(line)")
            }
        }
    }

    /// Thousands of probes in flight need more descriptors than the usual soft limit of 1024;
    /// take what the hard limit allows (the unit sets LimitNOFILE=).
    static func raiseFileLimit(logger: Logger) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) != 0 {
            logger.warning("cannot raise the open file limit: \(String(cString: strerror(errno)))")
        }
    }

    /// A socket we bound ourselves gets the same rights the .socket unit gives it: 0660, group clustermaker.
    static func restrictSocket(_ path: String, logger: Logger) {
        let policy = PeerPolicy()
        if let gid = policy.allowedGroup, chown(path, 0, gid) != 0, geteuid() == 0 {
            logger.warning("cannot chown \(path) to group \(policy.groupName): \(String(cString: strerror(errno)))")
        }
        chmod(path, 0o660)
    }
}
