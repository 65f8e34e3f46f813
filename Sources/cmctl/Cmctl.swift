import ArgumentParser
import CMTypes
import CMWire
import Foundation

@main
struct Cmctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cmctl",
        abstract: "Control a ClusterMaker master: status, health, metrics, virtual IPs, configuration.",
        discussion: "See cmctl(8). Exit status: 0 ok, 1 failed, 3 a daemon is not running (status), 64 usage, 69 daemon not running, 77 permission denied.",
        version: ClusterMakerVersion.string,
        subcommands: [Status.self, Health.self, Metrics.self, Lb.self, Vip.self, Node.self, Image.self, Volume.self, Master.self, Pxe.self, Web.self, Snapshot.self, Config.self, Completion.self]
    )
}

/// Options every subcommand that talks to daemons takes.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Directory of the control sockets.", valueName: "dir"))
    var runtimeDir: String = "/run/clustermaker"

    @Flag(name: .long, help: "Print JSON instead of tables.")
    var json = false

    func socket(_ daemon: SuiteDaemon) -> String { daemon.socketPath(runtimeDirectory: runtimeDir) }

    /// Opens a connection to `daemon`, runs `body`, and turns wire failures into the
    /// documented exit statuses with a one-line message on stderr.
    func call<R: Sendable>(_ daemon: SuiteDaemon, _ body: (WireConnection) async throws -> R) async throws -> R {
        do {
            return try await WireClient.withConnection(path: socket(daemon), daemon: daemon.name, peer: "cmctl", body)
        } catch let error as WireError {
            throw CLIError.wire(error)
        }
    }
}

enum CLIError: Error, CustomStringConvertible {
    case wire(WireError)
    case failed(String)

    var description: String {
        switch self {
        case .wire(let e): return e.message
        case .failed(let m): return m
        }
    }

    var exitCode: Int32 {
        switch self {
        case .wire(let e):
            switch e.code {
            case .notRunning, .unavailable: return 69
            case .permissionDenied: return 77
            default: return 1
            }
        case .failed: return 1
        }
    }
}

extension AsyncParsableCommand {
    /// Runs `work`; a CLIError is printed as "cmctl: MESSAGE" and becomes its exit status.
    func reportingErrors(_ work: () async throws -> Void) async throws {
        do {
            try await work()
        } catch let error as CLIError {
            FileHandle.standardError.write(Data("cmctl: \(error)\n".utf8))
            throw ExitCode(error.exitCode)
        }
    }
}

struct Completion: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a shell completion script (bash, zsh or fish).")

    @Argument(help: "bash, zsh or fish")
    var shell: String

    func run() throws {
        guard let kind = CompletionShell(rawValue: shell) else {
            throw ValidationError("unknown shell \"\(shell)\": use bash, zsh or fish")
        }
        print(Cmctl.completionScript(for: kind))
    }
}

func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = WireJSON.encoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes, .prettyPrinted]
    encoder.dateEncodingStrategy = .iso8601
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

/// One JSON object per line, for streams (`health watch --json`).
/// A watch command is subscribed: says so on standard output, or with --json on standard
/// error (the output stays one JSON object per line), so that whoever starts it, a script or
/// a test, knows from when on no event is missed.
func announceWatching(_ what: String, json: Bool) {
    let line = "watching \(what) (Ctrl-C to stop)\n"
    if json { FileHandle.standardError.write(Data(line.utf8)) } else { print(line, terminator: ""); fflush(nil) }
}

func printJSONLine<T: Encodable>(_ value: T) throws {
    let encoder = WireJSON.encoder()
    encoder.dateEncodingStrategy = .iso8601
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
    fflush(nil)
}
