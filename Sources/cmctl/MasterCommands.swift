import ArgumentParser
import CMConfig
import CMReplication
import CMTypes
import CMWire
import Foundation

struct Master: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The masters: roles, epochs, the replicated state of the daemons, the volume's heal state; clone a backup master.",
        subcommands: [Status.self, Clone.self, GaneshaEpochCommand.self],
        defaultSubcommand: Status.self)

    /// What `cmctl master status --json` prints: each part, or why it is missing.
    struct Report: Encodable {
        var vip: VipStatusReply?
        var state: StateStatusReply?
        var volume: VolumeStatusReply?
        var unavailable: [String: String]
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "This master's role and epoch, each replicated database's last copy and lag, every master's replica on the volume, conflicts from a partition, heal and split-brain entries.")
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await reportingErrors {
                var r = Report(unavailable: [:])
                do { r.vip = try await global.call(.vipd) { try await $0.request(MessageType.vipStatus, Empty(), as: VipStatusReply.self) } } catch {
                    r.unavailable["cm-vipd"] = "\(error)"
                }
                do { r.state = try await global.call(.replicad) { try await $0.request(MessageType.stateStatus, Empty(), as: StateStatusReply.self) } } catch {
                    r.unavailable["cm-replicad"] = "\(error)"
                }
                if r.state != nil {
                    r.volume = try? await global.call(.replicad) { try await $0.request(MessageType.volumeStatus, Empty(), as: VolumeStatusReply.self) }
                }
                if global.json { return try printJSON(r) }
                print(Self.render(r))
                if r.state?.conflicts.isEmpty == false { throw ExitCode(2) }
            }
        }

        static func render(_ r: Report, now: Date = Date()) -> String {
            var out: [String] = []
            if let v = r.vip {
                out.append("role:      \(v.role.rawValue) (cm-vipd, epoch \(v.epoch)\(v.roleInstance.map { ", instance \($0)" } ?? ""))")
            }
            for (daemon, why) in r.unavailable.sorted(by: { $0.key < $1.key }) { out.append("\(daemon): not answering (\(why))") }
            guard let s = r.state else { return out.joined(separator: "\n") }
            let doing = s.publishing ? "publishing its state" : s.role == .active ? "restoring the newest replica" : "standby: takes the newest replica when it becomes active"
            out.append("master:    \(s.master), \(doing)")
            if let p = s.problem { out.append("problem:   \(p)") }
            if let p = s.configProblem { out.append("config:    \(p)") } else if let t = s.configApplied {
                out.append("config:    the active master's /etc/clustermaker applied \(Format.age(since: t, now: now))")
            }
            var dbs = Table("DATABASE", "PATH", "LAST COPY", "TOOK", "SIZE", "LAG", "PROBLEM")
            for d in s.databases {
                dbs.add(d.name, d.path, d.copied.map { Format.age(since: $0, now: now) } ?? "never",
                        d.copySeconds.map { String(format: "%.0f ms", $0 * 1000) } ?? "-", d.bytes.map { Format.number(Double($0)) + "B" } ?? "-",
                        d.pendingSince.map { String(format: "%.2f s", now.timeIntervalSince($0)) } ?? (s.publishing ? "0" : "-"), d.problem ?? "")
            }
            out += ["", dbs.render()]
            var reps = Table("REPLICA OF", "EPOCH", "ACTIVE SINCE", "LAST COPY", "DATABASES")
            for m in s.replicas {
                reps.add(m.master, m.epoch.description, Format.age(since: m.since, now: now), Format.age(since: m.updated, now: now),
                         m.databases.keys.sorted().joined(separator: ","))
            }
            out += ["", s.replicas.isEmpty ? "no replica on the volume yet" : reps.render()]
            if !s.conflicts.isEmpty {
                out += ["", "CONFLICTS: state written by a master while a newer one was active (a partition). It is not in the cluster's state",
                        "and was not merged; read it with sqlite3, re-apply what is needed, then remove the directory."]
                var t = Table("MASTER", "EPOCH", "LAST WRITE", "NEWER", "KEPT IN")
                for c in s.conflicts {
                    t.add(c.master, c.epoch.description, Format.age(since: c.updated, now: now),
                          c.newerMaster.isEmpty ? "-" : "\(c.newerMaster) (epoch \(c.newerEpoch))", c.path)
                }
                out.append(t.render())
            }
            if let v = r.volume {
                let pending = v.bricks.compactMap(\.healPending).reduce(0, +), split = v.bricks.compactMap(\.splitBrain).reduce(0, +)
                let online = v.bricks.filter(\.online).count
                out += ["", "volume:    \(v.volume) (\(v.state), \(v.type)), \(online) of \(v.bricks.count) bricks online"
                    + (v.replicaCount > 1 ? ", heal pending \(pending), split brain \(split)" : "")]
            }
            return out.joined(separator: "\n")
        }
    }
}

/// `cmctl master ganesha-epoch`: what /etc/ganesha/nfs-ganesha's EPOCH_EXEC runs before each
/// start of nfs-ganesha (GaneshaEpoch).
struct GaneshaEpochCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ganesha-epoch",
        abstract: "Print the next server epoch for this master's nfs-ganesha: its place in cluster.toml's masters (high 16 bits) and a generation one more on every start (low 16 bits).",
        discussion: """
            Run by nfs-ganesha-config.service (EPOCH_EXEC in /etc/ganesha/nfs-ganesha, written by \
            scripts/setup) before each start of nfs-ganesha: two masters never hand out the same \
            NFSv4 client and state ids, even when their ganesha started in the same second. \
            Prints nothing and exits 1 when this master is not in cluster.toml (ganesha then \
            keeps its start time as its epoch).
            """)
    @Option(help: ArgumentHelp("The configuration: cluster.toml's masters, replicad.toml's master name.", valueName: "dir"))
    var configDir = "/etc/clustermaker"
    @Option(help: ArgumentHelp("Where the generation is kept (the file ganesha-epoch).", valueName: "dir"))
    var stateDir = "/var/lib/clustermaker"

    func run() throws {
        do {
            let cluster = try ClusterConfig.load(configDir: configDir)
            let master = try ReplicadConfig.load(configDir: configDir).state.master
            print(try GaneshaEpoch.next(master: master, cluster: cluster, generationFile: "\(stateDir)/ganesha-epoch"))
        } catch {
            FileHandle.standardError.write(Data("cmctl master ganesha-epoch: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
