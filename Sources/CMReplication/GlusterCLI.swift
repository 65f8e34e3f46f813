import CMTypes
import Foundation

/// What `gluster volume info` and `volume status` say of one volume.
public struct GlusterVolume: Sendable, Equatable, Codable {
    public var name: String
    public var id: String
    /// "Created", "Started", "Stopped".
    public var status: String
    /// "Distribute", "Replicate", …
    public var type: String
    public var replicaCount: Int
    public var arbiterCount: Int
    public var bricks: [String]
    public var options: [String: String]
}

public struct GlusterBrickStatus: Sendable, Equatable, Codable {
    public var brick: String
    public var online: Bool
    public var pid: Int?
    public var port: Int?
}

/// A host of glusterd's trusted pool (`gluster pool list`), this one included.
public struct GlusterPeer: Sendable, Equatable, Codable {
    public var uuid: String
    public var hostname: String
    public var connected: Bool
    public init(uuid: String, hostname: String, connected: Bool) {
        self.uuid = uuid
        self.hostname = hostname
        self.connected = connected
    }
}

/// One brick's line of `gluster volume heal VOLUME info summary`.
public struct GlusterHealBrick: Sendable, Equatable, Codable {
    public var brick: String
    /// "Connected", "Transport endpoint is not connected", …
    public var status: String
    /// Files this brick holds that its replicas do not yet (total), and those in split brain.
    public var pending: Int
    public var splitBrain: Int
    /// Of `pending`, those found to need a heal. The others are "possibly healing": glfsheal
    /// could not lock them to look, because a heal or a client's writes hold the lock (a file
    /// written every few hundred milliseconds through ganesha is always so).
    public var needsHeal: Int

    public init(brick: String, status: String, pending: Int, splitBrain: Int, needsHeal: Int? = nil) {
        self.brick = brick
        self.status = status
        self.pending = pending
        self.splitBrain = splitBrain
        self.needsHeal = needsHeal ?? pending
    }
}

public struct GlusterError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ d: String) { description = d }
}

/// The `gluster` command with --xml: GlusterFS's own management interface, parsed. Pure
/// parsing lives in the static functions (tested with glusterd's real output); `run` talks
/// to glusterd through its control socket.
public struct GlusterCLI: Sendable {
    public var socket: String
    public var command: String

    public init(socket: String, command: String = "/usr/sbin/gluster") {
        self.socket = socket
        self.command = command
    }

    /// Runs `gluster ARGS --xml`; returns the XML document, or throws glusterd's own error text.
    public func run(_ args: [String], timeout: TimeInterval = 120) throws -> XMLTree {
        // gluster's own --timeout bounds its wait for glusterd; ours, a little longer, the program.
        try Self.xml(command, ["--glusterd-sock=\(socket)", "--mode=script", "--xml", "--timeout=\(Int(timeout))"] + args,
                     as: args, timeout: timeout + 10)
    }

    /// Runs `program` and reads its XML answer; errors name the command as `gluster ARGS`.
    static func xml(_ program: String, _ arguments: [String], as args: [String], timeout: TimeInterval) throws -> XMLTree {
        let r = try execute(program, arguments, timeout: timeout)
        guard let doc = try? XMLTree.parse(r.text) else { throw failure(r, args, timeout: timeout) }
        try check(doc, args)
        return doc
    }

    static func execute(_ program: String, _ arguments: [String], timeout: TimeInterval) throws -> ChildProcess.Result {
        do {
            return try ChildProcess.run(program, arguments, timeout: .seconds(timeout))
        } catch { throw GlusterError("cannot run \(program): \(error)") }
    }

    /// What went wrong with a run of `gluster ARGS`: no answer in time, its own words, or its status.
    static func failure(_ r: ChildProcess.Result, _ args: [String], timeout: TimeInterval) -> GlusterError {
        let text = (r.text + r.errors).trimmingCharacters(in: .whitespacesAndNewlines)
        return GlusterError("gluster \(args.joined(separator: " ")): \(r.timedOut ? "no answer within \(Int(timeout)) s" : text.isEmpty ? "exit status \(r.status)" : text)")
    }

    /// glusterd's opRet/opErrstr: non-zero is a failure with its text.
    static func check(_ doc: XMLTree, _ args: [String]) throws {
        guard doc.name == "cliOutput" else { throw GlusterError("gluster \(args.joined(separator: " ")): <\(doc.name)> instead of <cliOutput>") }
        let ret = Int(doc.value("opRet") ?? "0") ?? 0
        if ret != 0 {
            let why = doc.value("opErrstr").flatMap { $0.isEmpty ? nil : $0 } ?? "failed (opRet \(ret))"
            throw GlusterError("gluster \(args.joined(separator: " ")): \(why)")
        }
    }

    /// The volume, or nil if glusterd has none of that name.
    public func volume(_ name: String, timeout: TimeInterval = 120) throws -> GlusterVolume? {
        do {
            return try Self.parseVolumes(run(["volume", "info", name], timeout: timeout)).first
        } catch let e as GlusterError where e.description.contains("does not exist") {
            return nil
        }
    }

    public func status(_ name: String, timeout: TimeInterval = 120) throws -> [GlusterBrickStatus] {
        try Self.parseStatus(run(["volume", "status", name], timeout: timeout))
    }

    /// Heal status of a replicated volume (nil for one that is not: nothing to heal). Asks
    /// glfsheal itself, as `gluster volume heal VOLUME info summary` does, but with this
    /// glusterd's socket: the CLI (GlusterFS 10) does not pass its --glusterd-sock on, so its
    /// glfsheal asks /run/glusterd.socket, which is another glusterd's or none.
    public func heal(_ volume: GlusterVolume, timeout: TimeInterval = 120) throws -> [GlusterHealBrick]? {
        guard volume.replicaCount > 1 else { return nil }
        guard let glfsheal = Self.glfsheal else {
            return Self.parseHeal(try run(["volume", "heal", volume.name, "info", "summary"], timeout: timeout))
        }
        return Self.parseHeal(try Self.xml(glfsheal, [volume.name, "info-summary", "--xml", "glusterd-sock", socket],
                                           as: ["volume", "heal", volume.name, "info", "summary"], timeout: timeout))
    }

    /// Starts an index self-heal of the volume now (`gluster volume heal VOLUME`): the self-heal
    /// daemon otherwise looks only when a brick reconnects to it or every cluster.heal-timeout
    /// (10 minutes), and a brick that was merely out of reach may never have disconnected.
    public func startHeal(_ name: String, timeout: TimeInterval = 30) throws {
        // Its --xml answer is plain text ("Launching heal operation … has been successful"):
        // the exit status says.
        let args = ["volume", "heal", name]
        let r = try Self.execute(command, ["--glusterd-sock=\(socket)", "--mode=script", "--timeout=\(Int(timeout))"] + args, timeout: timeout + 10)
        guard r.succeeded else { throw Self.failure(r, args, timeout: timeout + 10) }
    }

    /// glfsheal, where Debian (multiarch: x86_64-linux-gnu, aarch64-linux-gnu) or other
    /// distributions put it; nil: ask through the gluster command.
    static let glfsheal: String? = {
        var u = utsname()
        uname(&u)
        let machine = withUnsafeBytes(of: &u.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return ["/usr/lib/\(machine)-linux-gnu/glusterfs/glfsheal", "/usr/libexec/glusterfs/glfsheal", "/usr/lib/glusterfs/glfsheal"]
            .first { access($0, X_OK) == 0 }
    }()

    public func peers() throws -> [GlusterPeer] {
        Self.parsePeers(try run(["pool", "list"]))
    }

    public static func parsePeers(_ doc: XMLTree) -> [GlusterPeer] {
        doc.all("peerStatus/peer").map { p in
            GlusterPeer(uuid: p.value("uuid") ?? "", hostname: p.value("hostname") ?? "", connected: p.value("connected") == "1")
        }
    }

    public static func parseHeal(_ doc: XMLTree) -> [GlusterHealBrick] {
        doc.all("healInfo/bricks/brick").map { b in
            GlusterHealBrick(brick: b.value("name") ?? "?", status: b.value("status") ?? "?",
                             pending: Int(b.value("totalNumberOfEntries") ?? "") ?? 0,
                             splitBrain: Int(b.value("numberOfEntriesInSplitBrain") ?? "") ?? 0,
                             needsHeal: Int(b.value("numberOfEntriesInHealPending") ?? ""))
        }
    }

    public static func parseVolumes(_ doc: XMLTree) -> [GlusterVolume] {
        doc.all("volInfo/volumes/volume").map { v in
            var options: [String: String] = [:]
            for o in v.all("options/option") {
                if let k = o.value("name"), let value = o.value("value") { options[k] = value }
            }
            return GlusterVolume(name: v.value("name") ?? "", id: v.value("id") ?? "", status: v.value("statusStr") ?? "",
                                 type: v.value("typeStr") ?? "", replicaCount: Int(v.value("replicaCount") ?? "") ?? 1,
                                 arbiterCount: Int(v.value("arbiterCount") ?? "") ?? 0,
                                 bricks: v.all("bricks/brick").compactMap { $0.value("name") },
                                 options: options)
        }
    }

    public static func parseStatus(_ doc: XMLTree) -> [GlusterBrickStatus] {
        doc.all("volStatus/volumes/volume/node").compactMap { n in
            // Self-heal daemons and the like are listed too, without a brick path.
            guard let host = n.value("hostname"), let path = n.value("path"), path.hasPrefix("/") else { return nil }
            return GlusterBrickStatus(brick: "\(host):\(path)", online: n.value("status") == "1",
                                      pid: Int(n.value("pid") ?? ""), port: Int(n.value("port") ?? ""))
        }
    }
}
