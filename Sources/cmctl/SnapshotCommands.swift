import ArgumentParser
import CMTypes
import CMWire
import Foundation

struct Snapshot: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Restore points of this master's state and online snapshots of data sets (cm-snapd).",
        discussion: "Data set \"system\" is the restore points (snapd.toml's [system] paths); the others are snapd.toml's [[data]].",
        subcommands: [List.self, Show.self, Create.self, Diff.self, Restore.self, Rm.self, AptPre.self, AptPost.self],
        defaultSubcommand: List.self)

    /// "0.07s" under ten seconds (a btrfs snapshot's time is the point), else as Format says.
    static func took(_ seconds: Double) -> String {
        seconds < 10 ? String(format: "%.2fs", seconds) : Format.duration(seconds)
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every data set's snapshots.")
        @OptionGroup var global: GlobalOptions
        @Option(name: .customLong("what"), help: ArgumentHelp("Only this data set (\"system\" or a name from snapd.toml).", valueName: "set"))
        var dataSet: String?

        func run() async throws {
            try await reportingErrors {
                let r = try await global.call(.snapd) { try await $0.request(MessageType.snapshotList, SnapshotListRequest(dataSet: dataSet), as: SnapshotListReply.self) }
                if global.json { return try printJSON(r) }
                var t = Table("SET", "ID", "KIND", "CREATED", "TOOK", "BACKEND", "NOTE")
                for set in r.sets {
                    if let p = set.problem { t.add(set.name, "-", "-", "-", "-", "-", "cannot snapshot: \(p)") }
                    for s in set.snapshots {
                        let note = [s.pre.map { "pre \($0)" }, s.note].compactMap { $0 }.joined(separator: "; ")
                        t.add(set.name, "\(s.id)", s.kind.rawValue, Format.time(s.created), Snapshot.took(s.seconds), s.backend.rawValue, note)
                    }
                }
                print(t.render())
                print("\nstore: \(r.store); timeline: \(r.nextTimeline.map { "next \(Format.time($0))" } ?? "off")")
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One snapshot: what, when, how, where its copy is.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The snapshot's id.") var id: Int
        @Option(name: .customLong("what"), help: ArgumentHelp("Its data set.", valueName: "set")) var dataSet = "system"

        func run() async throws {
            try await reportingErrors {
                let r = try await global.call(.snapd) { try await $0.request(MessageType.snapshotShow, SnapshotRef(dataSet: dataSet, id: id), as: SnapshotShowReply.self) }
                if global.json { return try printJSON(r) }
                let i = r.info
                print("""
                    snapshot: \(i.id) of \(i.dataSet) (\(i.kind.rawValue)\(i.pre.map { ", post of \($0)" } ?? ""))
                    created:  \(Format.time(i.created)), took \(Snapshot.took(i.seconds))
                    of:       \(i.source)
                    backend:  \(r.backend)
                    copy:     \(r.tree)
                    """)
                if let n = i.note { print("note:     \(n)") }
            }
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Take a snapshot now; prints its id.")
        @OptionGroup var global: GlobalOptions
        @Option(name: .customLong("what"), help: ArgumentHelp("The data set: \"system\" (default) or a name from snapd.toml.", valueName: "set")) var dataSet = "system"
        @Option(help: "Why it was taken, shown by list.") var note: String?
        @Option(help: ArgumentHelp("single, pre or post (the two sides of a change).", valueName: "kind")) var kind = "single"
        @Option(help: ArgumentHelp("For a post snapshot: its pre snapshot's id.", valueName: "id")) var pre: Int?

        func run() async throws {
            guard let k = SnapshotInfo.Kind(rawValue: kind), [.single, .pre, .post].contains(k) else {
                throw ValidationError("--kind \(kind): single, pre or post")
            }
            if k == .post, pre == nil { throw ValidationError("a post snapshot names its pre: --pre ID") }
            try await reportingErrors {
                let i = try await global.call(.snapd) {
                    try await $0.request(MessageType.snapshotCreate, SnapshotCreateRequest(dataSet: dataSet, kind: k, note: note, pre: pre), as: SnapshotInfo.self)
                }
                if global.json { return try printJSON(i) }
                print("\(i.id)")
                FileHandle.standardError.write(Data("snapshot \(i.id) of \(i.dataSet) taken in \(Snapshot.took(i.seconds)) (\(i.backend.rawValue))\n".utf8))
            }
        }
    }

    struct Diff: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Files added (A), changed (C) and removed (D) from snapshot A to B, or to the live data.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "From this snapshot.") var a: Int
        @Argument(help: "To this one (default: the data as it is now).") var b: Int?
        @Option(name: .customLong("what"), help: ArgumentHelp("Their data set.", valueName: "set")) var dataSet = "system"

        func run() async throws {
            try await reportingErrors {
                let d = try await global.call(.snapd) { try await $0.request(MessageType.snapshotDiff, SnapshotDiffRequest(dataSet: dataSet, from: a, to: b), as: TreeDiff.self) }
                if global.json { return try printJSON(d) }
                for line in d.lines { print(line) }
                FileHandle.standardError.write(Data("\(d.added.count) added, \(d.changed.count) changed, \(d.removed.count) removed\n".utf8))
            }
        }
    }

    struct Restore: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Put a snapshot back: the whole data set in place (after a safety snapshot; its services stopped and started), one file, or a copy beside it.",
            discussion: "Needs root. In place is refused without --yes.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The snapshot's id.") var id: Int
        @Option(name: .customLong("what"), help: ArgumentHelp("Its data set.", valueName: "set")) var dataSet = "system"
        @Option(help: ArgumentHelp("Only this file (absolute path), in place.", valueName: "path")) var file: String?
        @Option(help: ArgumentHelp("Restore a copy to this new path instead (a database: a new instance).", valueName: "path")) var to: String?
        @Flag(help: "Check the copy: SQLite's integrity_check; PostgreSQL started on a private socket and pg_amcheck'ed.") var verify = false
        @Flag(help: "Restore in place without asking.") var yes = false

        func run() async throws {
            if file != nil, to != nil { throw ValidationError("--file or --to, not both") }
            if file == nil, to == nil, !yes {
                throw ValidationError("restoring \(dataSet) in place replaces it with snapshot \(id) (a safety snapshot is taken first): add --yes")
            }
            try await reportingErrors {
                let r = try await global.call(.snapd) {
                    try await $0.request(MessageType.snapshotRestore, SnapshotRestoreRequest(dataSet: dataSet, id: id, file: file, to: to, verify: verify),
                                         as: SnapshotRestoreReply.self)
                }
                if global.json { return try printJSON(r) }
                if let file { return print("restored \(file) from snapshot \(id)") }
                if let copy = r.copy {
                    print("snapshot \(id) of \(dataSet) restored to \(copy)")
                } else {
                    print("snapshot \(id) of \(dataSet) restored: \(r.changes.added.count) added, \(r.changes.changed.count) changed, \(r.changes.removed.count) removed")
                    if let s = r.safety { print("safety snapshot: \(s.id) (cmctl snapshot restore \(s.id)\(dataSet == "system" ? "" : " --what \(dataSet)") --yes undoes this)") }
                    print("restarted: \(r.restarted.isEmpty ? "none" : r.restarted.joined(separator: " "))")
                }
                if let v = r.verified { print("checked: \(v)") }
            }
        }
    }

    struct Rm: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove snapshots (root only).")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Their ids.") var ids: [Int]
        @Option(name: .customLong("what"), help: ArgumentHelp("Their data set.", valueName: "set")) var dataSet = "system"

        func run() async throws {
            try await reportingErrors {
                for id in ids {
                    _ = try await global.call(.snapd) { try await $0.request(MessageType.snapshotRemove, SnapshotRef(dataSet: dataSet, id: id), as: Empty.self) }
                    if !global.json { print("removed snapshot \(id) of \(dataSet)") }
                }
            }
        }
    }

    /// The APT hook's two halves (/etc/apt/apt.conf.d/80clustermaker-snapshot): a pre
    /// snapshot before dpkg runs, its post after, paired by the id kept in the runtime
    /// directory. Neither fails apt: a master without cm-snapd still installs packages.
    struct AptPre: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "apt-pre", abstract: "The APT hook's pre snapshot (DPkg::Pre-Invoke).", shouldDisplay: false)
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            let marker = "\(global.runtimeDir)/snapd-apt-pre"
            try? FileManager.default.removeItem(atPath: marker)
            guard let id = await RestorePoint.take(.pre, note: "apt: \(Self.aptCommand())", pre: nil, runtimeDir: global.runtimeDir) else { return }
            try? Data("\(id)\n".utf8).write(to: URL(fileURLWithPath: marker))
        }

        /// What apt was asked to do: the command line of the nearest apt, dpkg or
        /// unattended-upgrade above this process ("apt-get install nginx").
        static func aptCommand() -> String {
            var pid = getppid()
            for _ in 0..<6 where pid > 1 {
                let comm = (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
                if comm.hasPrefix("apt") || comm.hasPrefix("dpkg") || comm.hasPrefix("unattended") {
                    let raw = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline"))) ?? Data()
                    let said = raw.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }.joined(separator: " ").replacingOccurrences(of: "\n", with: " ")
                    if !said.isEmpty { return String(said.prefix(200)) }
                }
                let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
                // The parent's pid is the second field after the command's closing parenthesis.
                guard let close = stat.lastIndex(of: ")"),
                      let ppid = stat[stat.index(after: close)...].split(separator: " ").dropFirst().first.flatMap({ Int32($0) }) else { break }
                pid = ppid
            }
            return "dpkg run"
        }
    }

    struct AptPost: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "apt-post", abstract: "The APT hook's post snapshot (DPkg::Post-Invoke).", shouldDisplay: false)
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            let marker = "\(global.runtimeDir)/snapd-apt-pre"
            guard let pre = (try? String(contentsOfFile: marker, encoding: .utf8)).flatMap({ Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }) else { return }
            try? FileManager.default.removeItem(atPath: marker)
            _ = await RestorePoint.take(.post, note: "apt", pre: pre, runtimeDir: global.runtimeDir)
        }
    }
}

/// Restore points around a change cmctl makes itself (an image built or changed, a console
/// user added): a pre snapshot of the system data set before, its post after, paired, as the
/// APT hook does around dpkg. A master without cm-snapd makes the change all the same.
enum RestorePoint {
    static func around<T>(_ what: String, runtimeDir: String = "/run/clustermaker", _ body: () async throws -> T) async throws -> T {
        let pre = await take(.pre, note: "cmctl \(what)", pre: nil, runtimeDir: runtimeDir)
        do {
            let result = try await body()
            if let pre { _ = await take(.post, note: "cmctl \(what)", pre: pre, runtimeDir: runtimeDir) }
            return result
        } catch {
            if let pre { _ = await take(.post, note: "cmctl \(what) (failed)", pre: pre, runtimeDir: runtimeDir) }
            throw error
        }
    }

    static func take(_ kind: SnapshotInfo.Kind, note: String, pre: Int?, runtimeDir: String) async -> Int? {
        let socket = SuiteDaemon.snapd.socketPath(runtimeDirectory: runtimeDir)
        guard FileManager.default.fileExists(atPath: socket) else { return nil }
        do {
            let info = try await WireClient.withConnection(path: socket, daemon: SuiteDaemon.snapd.name, peer: "cmctl") {
                try await $0.request(MessageType.snapshotCreate, SnapshotCreateRequest(dataSet: "system", kind: kind, note: note, pre: pre), as: SnapshotInfo.self)
            }
            FileHandle.standardError.write(Data("restore point \(info.id) (\(kind.rawValue)) taken\n".utf8))
            return info.id
        } catch {
            FileHandle.standardError.write(Data("note: no \(kind.rawValue) restore point: \(error)\n".utf8))
            return nil
        }
    }
}
