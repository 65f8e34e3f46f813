import ArgumentParser
import CMTypes
import CMWire
import Foundation

struct Volume: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The cluster filesystem (cm-replicad): the GlusterFS volume, its bricks, the NFS exports.",
        subcommands: [Status.self, Exports.self],
        defaultSubcommand: Status.self)

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The volume: state, type, bricks online, heal info (replicated volumes), mount, NFS exports.")
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await reportingErrors {
                let s = try await global.call(.replicad) { try await $0.request(MessageType.volumeStatus, Empty(), as: VolumeStatusReply.self) }
                if global.json { return try printJSON(s) }
                print("""
                    volume:   \(s.volume) (\(s.state), \(s.type)\(s.replicaCount > 1 ? ", replica \(s.replicaCount)" : ""))
                    mount:    \(s.mount)\(s.mounted ? "" : " (not mounted)")
                    ping:     \(s.pingTimeoutSeconds.map { "\($0) s (network.ping-timeout: the stall when a master fails)" } ?? "-")
                    exports:  \(s.exports) in \(s.exportsFile)\(s.lastReload.map { ", ganesha reloaded \(Format.age(since: $0))" } ?? "")
                    """)
                if let p = s.problem { print("problem:  \(p)") }
                if let w = s.sync { print("whole:    \(w.whole ? "yes" : "no, \(w.reason ?? "?")") (checked \(Format.age(since: w.checked)))") }
                var t = Table("BRICK", "ONLINE", "HEAL PENDING", "SPLIT BRAIN")
                for b in s.bricks {
                    t.add(b.brick, b.online ? "yes" : "NO", b.healPending.map(String.init) ?? "-", b.splitBrain.map(String.init) ?? "-")
                }
                print("")
                print(t.render())
            }
        }
    }

    struct Exports: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Rewrite ganesha's exports from the image store now and reload it if they changed.")
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await reportingErrors {
                let r = try await global.call(.replicad) { try await $0.request(MessageType.exportsSync, Empty(), as: ExportsSyncReply.self) }
                if global.json { return try printJSON(r) }
                print(r.reloaded ? "\(r.exports) exports written; ganesha reloaded" : "\(r.exports) exports, unchanged")
            }
        }
    }

    /// After an image change: has cm-replicad export it at once (it would within its scan
    /// interval anyway). Says so when cm-replicad is not there instead of failing.
    static func syncAfterImageChange(_ global: GlobalOptions) async {
        do {
            let r = try await global.call(.replicad) { try await $0.request(MessageType.exportsSync, Empty(), as: ExportsSyncReply.self) }
            if r.reloaded { FileHandle.standardError.write(Data("NFS exports updated (\(r.exports)); ganesha reloaded\n".utf8)) }
        } catch {
            FileHandle.standardError.write(Data("note: NFS exports not updated now: \(error)\n".utf8))
        }
    }
}
