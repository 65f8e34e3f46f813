import CMConfig
import CMImage
import CMTypes
import CMWire
import Foundation
import Glibc
import Logging
import Synchronization

/// cm-replicad's work today: the suite's GlusterFS volume (created with this master's brick,
/// started, tuned, mounted here) and nfs-ganesha's exports of it (one per image revision and
/// /shared, rewritten when the image store changes, reloaded safely). Replication to a backup
/// master comes with the clone (docs/architecture.md).
public final class ReplicaService: Sendable {
    struct State {
        var config: ReplicadConfig
        var volume: GlusterVolume?
        var bricks: [GlusterBrickStatus] = []
        var mounted = false
        var exports = 0
        var lastReload: Date?
        var problem: String?
        /// What `checkSync` found last.
        var sync: VolumeSync?
        /// When `checkSync` last started an index heal.
        var healStarted: Date?
        /// When `checkSync` last asked glusterd for the volume (`volume`), found started.
        var volumeInfoAt: Date?
    }

    let state: Mutex<State>
    let logger: Logger

    public init(config: ReplicadConfig, logger: Logger) {
        state = Mutex(State(config: config))
        self.logger = logger
    }

    public var config: ReplicadConfig { state.withLock { $0.config } }

    public func apply(_ config: ReplicadConfig) { state.withLock { $0.config = config } }

    var gluster: GlusterCLI { GlusterCLI(socket: config.volume.glusterdSocket) }
    /// How long `status` waits for each of glusterd's answers.
    static let queryTimeout: TimeInterval = 5

    // MARK: The volume

    /// Creates, starts and tunes the volume if it is not yet, and mounts it here.
    public func ensureVolume() throws {
        let c = config.volume
        let cli = gluster
        var volume = try cli.volume(c.name)
        if volume == nil {
            try FileManager.default.createDirectory(atPath: c.brick, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
            var args = ["volume", "create", c.name, "\(c.address):\(c.brick)"]
            if Self.onRootFilesystem(c.brick) {
                // GlusterFS refuses a brick on the root filesystem unless forced: it fills "/".
                logger.warning("brick \(c.brick) is on the root filesystem: creating the volume with force (a dedicated filesystem is better)")
                args.append("force")
            }
            _ = try cli.run(args)
            logger.notice("created GlusterFS volume \(c.name) with brick \(c.address):\(c.brick)")
            volume = try cli.volume(c.name)
        }
        guard var v = volume else { throw GlusterError("volume \(c.name) is not there after creating it") }
        if v.status != "Started" {
            _ = try cli.run(["volume", "start", c.name])
            logger.notice("started GlusterFS volume \(c.name)")
        }
        let ping = "\(Int(c.pingTimeout.components.seconds))"
        if v.options["network.ping-timeout"] != ping {
            _ = try cli.run(["volume", "set", c.name, "network.ping-timeout", ping])
            logger.notice("volume \(c.name): network.ping-timeout \(ping) s")
        }
        v = try cli.volume(c.name) ?? v
        let bricks = (try? cli.status(c.name)) ?? []
        try mount(c)
        for dir in ["images", "shared"] {
            try FileManager.default.createDirectory(atPath: "\(c.mount)/\(dir)", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        }
        state.withLock {
            $0.volume = v
            $0.bricks = bricks
            $0.mounted = true
        }
    }

    /// Mounts the volume at `mount` with GlusterFS's FUSE client (POSIX ACLs on: images keep
    /// theirs) unless it is mounted there already.
    func mount(_ c: ReplicadConfig.Volume) throws {
        if Self.isMounted(c.mount) { return }
        try FileManager.default.createDirectory(atPath: c.mount, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        let (program, args) = Self.mountCommand(c, underSystemd: Self.underSystemd)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: program)
        p.arguments = args
        p.standardInput = FileHandle.nullDevice
        try p.run()
        // Polled, not waited for: the FUSE client's first process lives until its daemon has
        // mounted, and a failed mount ends it early.
        let deadline = Date().addingTimeInterval(15)
        while !Self.isMounted(c.mount) {
            if !p.isRunning, p.terminationStatus != 0 {
                throw GlusterError("mounting volume \(c.name) at \(c.mount): \((program as NSString).lastPathComponent) exited with status \(p.terminationStatus)")
            }
            guard Date() < deadline else { throw GlusterError("volume \(c.name) is not mounted at \(c.mount) 15 s after \((program as NSString).lastPathComponent) started") }
            usleep(100_000)
        }
        logger.notice("mounted volume \(c.name) at \(c.mount)")
    }

    /// Under systemd the mount is asked of PID 1 (systemd-mount: a transient mount unit in the
    /// host's namespace, seen by everyone, while this daemon keeps its sandbox); without
    /// systemd, GlusterFS's FUSE client mounts it directly.
    static func mountCommand(_ c: ReplicadConfig.Volume, underSystemd: Bool) -> (String, [String]) {
        if underSystemd {
            return ("/usr/bin/systemd-mount", ["--no-block", "--type=glusterfs", "--options=acl,_netdev",
                                               "--description=ClusterMaker volume \(c.name)", "\(c.address):/\(c.name)", c.mount])
        }
        return ("/usr/sbin/glusterfs", ["--acl", "--volfile-server=\(c.address)", "--volfile-id=\(c.name)", c.mount])
    }

    static func onRootFilesystem(_ path: String) -> Bool {
        var a = stat(), b = stat()
        return stat(path, &a) == 0 && stat("/", &b) == 0 && a.st_dev == b.st_dev
    }

    /// A GlusterFS FUSE mount at exactly `path` (/proc/self/mountinfo, field 5 and the type
    /// after " - ").
    public static func isMounted(_ path: String, mountinfo: String? = nil) -> Bool {
        let text = mountinfo ?? (ProcFile.read("/proc/self/mountinfo") ?? "")
        let wanted = path.hasSuffix("/") && path.count > 1 ? String(path.dropLast()) : path
        return text.split(separator: "\n").contains { line in
            let fields = line.split(separator: " ")
            guard fields.count > 4, let dash = fields.firstIndex(of: "-"), dash + 1 < fields.count else { return false }
            return fields[4].replacingOccurrences(of: "\\040", with: " ") == wanted && fields[dash + 1] == "fuse.glusterfs"
        }
    }

    // MARK: Exports

    /// Writes ganesha's exports from the image store on the volume when they changed, and
    /// reloads ganesha. Nothing is written when an export's directory is missing (the old
    /// exports stay, and say why); a ganesha that dies on the reload gets the old file back.
    @discardableResult
    public func syncExports() throws -> ExportsSyncReply {
        let c = config
        guard Self.isMounted(c.volume.mount) else { throw GlusterError("volume \(c.volume.name) is not mounted at \(c.volume.mount)") }
        let store = ImageStore(directory: "\(c.volume.mount)/images")
        let exports = GaneshaExports.forStore(store, backend: .gluster, volume: c.volume.name, volumeServer: c.volume.address.description,
                                              clients: c.nfs.clients.map(\.description))
        for e in exports.exports {
            var d: ObjCBool = false
            guard FileManager.default.fileExists(atPath: c.volume.mount + e.path, isDirectory: &d), d.boolValue else {
                throw GlusterError("export \(e.pseudo): \(e.path) is not a directory on volume \(c.volume.name); the exports were left as they were")
            }
        }
        let text = exports.render()
        let file = c.nfs.exportsFile
        let old = try? String(contentsOfFile: file, encoding: .utf8)
        state.withLock { $0.exports = exports.exports.count }
        if old == text { return ExportsSyncReply(exports: exports.exports.count, reloaded: false) }
        try GaneshaExports.install(text, at: file)
        logger.notice("wrote \(exports.exports.count) NFS exports to \(file)")
        switch reloadGanesha(c.nfs.ganeshaPidFile) {
        case .reloaded: break
        case .notRunning(let why):
            // Nothing to put back: ganesha reads this file when it starts.
            throw GlusterError(why)
        case .died(let why):
            if let old { try? GaneshaExports.install(old, at: file) }
            throw GlusterError(why)
        }
        state.withLock { $0.lastReload = Date() }
        return ExportsSyncReply(exports: exports.exports.count, reloaded: true)
    }

    enum Reload { case reloaded, notRunning(String), died(String) }

    /// SIGHUP, as nfs-ganesha.service's ExecReload: ganesha re-reads its exports, keeping the
    /// ones whose configuration is unchanged and the clients' state on them.
    func reloadGanesha(_ pidFile: String) -> Reload {
        guard let pid = Self.livePID(pidFile) else {
            return .notRunning("ganesha is not running (no live PID in \(pidFile)): the exports are written and load when it starts")
        }
        guard kill(pid, SIGHUP) == 0 else { return .notRunning("signalling ganesha (PID \(pid)): \(String(cString: strerror(errno)))") }
        usleep(500_000)
        guard kill(pid, 0) == 0 else { return .died("ganesha (PID \(pid)) exited after reloading the exports: the old ones were put back") }
        logger.notice("ganesha (PID \(pid)) reloaded its exports")
        return .reloaded
    }

    /// The PID in `pidFile` if that process is alive.
    static func livePID(_ pidFile: String) -> Int32? {
        guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
              let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1, kill(pid, 0) == 0 else { return nil }
        return pid
    }

    /// PID 1 is systemd (as sd_booted(3) tells): mounts and restarts are asked of it.
    static var underSystemd: Bool { FileManager.default.fileExists(atPath: "/run/systemd/system") }

    // MARK: ganesha's client state across roles

    /// Why ganesha should start afresh after this master's role went from `previous` to
    /// `now`, or nil. A master that leaves the active role keeps its ganesha running with the
    /// nodes' NFSv4 clients, sessions and opens of before; when the nodes come back to it (it
    /// preempts, or takes over again later) they find that stale state and recover their open
    /// files one every few seconds: their root hangs for minutes. A fresh ganesha is a new
    /// server to them, which they recover from at once, as from the other master's. The same
    /// when this master stays active through a healed partition (a new epoch): the nodes that
    /// were on the other side come back.
    public static func ganeshaRestartReason(from previous: (role: MasterRole, epoch: Epoch), to now: (role: MasterRole, epoch: Epoch)) -> String? {
        guard previous.role == .active else { return nil }
        if now.role != .active { return "this master left the active role (epoch \(previous.epoch) → \(now.role.rawValue))" }
        if now.epoch != previous.epoch { return "this master stayed active through a partition (epoch \(previous.epoch) → \(now.epoch)): nodes that were on the other master come back" }
        return nil
    }

    /// Restarts nfs-ganesha (its unit under systemd; without, SIGTERM for its supervisor to
    /// start it again), so that it holds no client state from before (`ganeshaRestartReason`).
    /// Blocking: call off the async pool.
    public func restartGanesha(reason: String) {
        let c = config
        if Self.underSystemd {
            let limit: Duration = .seconds(120)
            do {
                let r = try ChildProcess.run("/usr/bin/systemctl", ["restart", c.nfs.ganeshaUnit], timeout: limit)
                if r.succeeded {
                    logger.notice("restarted \(c.nfs.ganeshaUnit): \(reason)")
                } else {
                    logger.error("restarting \(c.nfs.ganeshaUnit) (\(reason)): \(r.failure("systemctl", timeout: limit))")
                }
            } catch {
                logger.error("restarting \(c.nfs.ganeshaUnit) (\(reason)): \(error)")
            }
            return
        }
        guard let pid = Self.livePID(c.nfs.ganeshaPidFile) else {
            logger.notice("ganesha is not running (no live PID in \(c.nfs.ganeshaPidFile)); nothing to restart: \(reason)")
            return
        }
        if kill(pid, SIGTERM) == 0 {
            logger.notice("stopped ganesha (PID \(pid)) for its supervisor to start it afresh: \(reason)")
        } else {
            logger.error("stopping ganesha (PID \(pid)) (\(reason)): \(String(cString: strerror(errno)))")
        }
    }

    // MARK: Status and the loop

    /// What glusterd says of the volume. In a partition glusterd waits for its unreachable
    /// peer: each question gets `queryTimeout`, then the answer says what is known.
    public func status() -> VolumeStatusReply {
        let c = config
        let volume = try? gluster.volume(c.volume.name, timeout: Self.queryTimeout)
        let bricks = volume == nil ? [] : ((try? gluster.status(c.volume.name, timeout: Self.queryTimeout)) ?? [])
        let heal = volume.flatMap { try? gluster.heal($0, timeout: Self.queryTimeout) } ?? []
        return state.withLock { s in
            if let volume { s.volume = volume }
            s.bricks = bricks
            let v = volume ?? s.volume
            var reply = VolumeStatusReply(volume: c.volume.name, state: v?.status ?? "missing", type: v?.type ?? "-", replicaCount: v?.replicaCount ?? 0,
                                     bricks: (v?.bricks ?? []).map { b in
                                         let h = heal.first { $0.brick == b }
                                         return VolumeBrick(brick: b, online: bricks.first { $0.brick == b }?.online ?? false,
                                                            healPending: h?.pending, splitBrain: h?.splitBrain)
                                     },
                                     mount: c.volume.mount, mounted: Self.isMounted(c.volume.mount),
                                     pingTimeoutSeconds: v?.options["network.ping-timeout"].flatMap { Int($0) },
                                     exportsFile: c.nfs.exportsFile, exports: s.exports, lastReload: s.lastReload, problem: s.problem)
            reply.sync = s.sync
            return reply
        }
    }

    // MARK: Whole again?

    /// Whether the volume is whole as this master sees it (`VolumeSync`). A partition makes
    /// glusterd wait for the unreachable peer: each question gets `queryTimeout`, and no
    /// answer is "not whole".
    public func checkSync(now: Date = Date()) -> VolumeSync {
        let result = findSync(now: now)
        state.withLock { $0.sync = result }
        return result
    }

    /// What `checkSync` found last; nil before its first look.
    public var lastSync: VolumeSync? { state.withLock { $0.sync } }

    private func findSync(now: Date) -> VolumeSync {
        let c = config.volume
        do {
            // Neither question is a glusterd transaction (`volume status` is one, across every
            // peer: after a partition the masters' polls of it timed out on each other's locks).
            // The volume's bricks change only with the clone: a started volume is asked for
            // again every `volumeInfoInterval` (each gluster command costs about 80 ms of CPU).
            let cached = state.withLock { s in
                s.volumeInfoAt.map { now.timeIntervalSince($0) < Self.volumeInfoInterval } ?? false ? s.volume : nil
            }
            let found = try cached ?? gluster.volume(c.name, timeout: Self.queryTimeout)
            guard let volume = found else {
                return VolumeSync(whole: false, reason: "there is no volume \(c.name)", checked: now)
            }
            if cached == nil {
                state.withLock { s in
                    s.volume = volume
                    s.volumeInfoAt = volume.status == "Started" ? now : nil
                }
            }
            let heal = volume.status == "Started" ? try gluster.heal(volume, timeout: Self.queryTimeout) : nil
            let tcp = ProcFile.read("/proc/net/tcp") ?? ""
            let connections = Self.brickConnections(procNetTCP: tcp, from: c.address, bricks: volume.bricks)
            let reason = Self.notWhole(volume, heal: heal, connections: connections)
            if Self.wantsHeal(heal), state.withLock({ s in
                guard s.healStarted.map({ now.timeIntervalSince($0) >= Self.healInterval }) ?? true else { return false }
                s.healStarted = now
                return true
            }) {
                do {
                    try gluster.startHeal(c.name)
                    logger.notice("started an index heal of \(c.name): \(reason ?? "entries to heal")")
                } catch {
                    logger.warning("cannot start a heal of \(c.name): \(error)")
                }
            }
            return VolumeSync(whole: reason == nil, reason: reason, checked: now)
        } catch {
            return VolumeSync(whole: false, reason: "\(error)", checked: now)
        }
    }

    /// How often `checkSync` starts a heal while entries wait for one.
    static let healInterval: TimeInterval = 10
    /// How long `checkSync` trusts the volume's bricks as glusterd last said them.
    static let volumeInfoInterval: TimeInterval = 30

    /// Entries wait for a heal that can run: glfsheal reached every brick. Split brains heal
    /// too with `cluster.favorite-child-policy` (the clone sets it); without, they stay.
    static func wantsHeal(_ heal: [GlusterHealBrick]?) -> Bool {
        guard let heal, heal.contains(where: { $0.needsHeal > 0 || $0.splitBrain > 0 }) else { return false }
        return heal.allSatisfy { $0.status == "Connected" }
    }

    /// Why the volume is not whole, or nil when it is. glfsheal, a client of its own, says
    /// whether every brick is reachable from here, what is in split brain and what is left to
    /// heal. Entries it could not lock to look at ("possibly healing": being healed, or being
    /// written by a client, as a node's file through the active master's ganesha is all the
    /// time) do not hold this master back: GlusterFS's replication reads the good copy and
    /// writes every brick, heal or no heal, for a client that reaches every brick. What must
    /// not happen is a client of this master writing with one brick only: one started while a
    /// brick was out of reach (ganesha, restarted in a partition) reconnects to it only
    /// seconds after glusterd does. Each client process connects once to every brick, so as
    /// many connections from this master to each brick (`connections`, by brick; absent where
    /// they cannot be counted) is the sign.
    public static func notWhole(_ volume: GlusterVolume, heal: [GlusterHealBrick]?, connections: [String: Int]) -> String? {
        if volume.status != "Started" { return "volume \(volume.name) is \(volume.status.lowercased())" }
        if volume.replicaCount > 1 {
            guard let heal else { return "no heal information" }
            for b in volume.bricks where !heal.contains(where: { $0.brick == b }) { return "brick \(b): no heal information" }
        }
        for h in heal ?? [] {
            if h.status != "Connected" { return "brick \(h.brick): \(h.status)" }
            func entries(_ n: Int) -> String { n == 1 ? "1 entry" : "\(n) entries" }
            if h.splitBrain > 0 { return "brick \(h.brick): \(entries(h.splitBrain)) in split brain" }
            if h.needsHeal > 0 { return "brick \(h.brick): \(entries(h.needsHeal)) to heal" }
        }
        let counted = volume.bricks.compactMap { b in connections[b].map { (b, $0) } }
        let most = counted.map(\.1).max() ?? 0
        if let (brick, n) = counted.first(where: { $0.1 < most }) {
            return "brick \(brick): \(n) of this master's \(most) clients connected"
        }
        return nil
    }

    /// glusterd's port range for bricks (glusterd.vol base-port … max-port).
    static let brickPorts: ClosedRange<UInt16> = 49152...60999

    /// Established TCP connections from `address` to each brick, from /proc/net/tcp (this
    /// network namespace's): to a brick on another host, those to its brick port range; to
    /// this host's own brick, those to a brick port listening here. Bricks named by a host
    /// name rather than an address are not counted.
    public static func brickConnections(procNetTCP: String, from address: IPv4Address, bricks: [String]) -> [String: Int] {
        typealias Endpoint = (address: IPv4Address, port: UInt16)
        struct Socket { var local: Endpoint; var remote: Endpoint; var state: UInt8 }
        func endpoint(_ text: Substring) -> Endpoint? {
            let parts = text.split(separator: ":")
            guard parts.count == 2, let a = UInt32(parts[0], radix: 16), let p = UInt16(parts[1], radix: 16) else { return nil }
            // The kernel prints the address as the host-order value of the network-order word.
            return (IPv4Address(UInt8(a & 0xff), UInt8(a >> 8 & 0xff), UInt8(a >> 16 & 0xff), UInt8(a >> 24)), p)
        }
        let sockets = procNetTCP.split(separator: "\n").dropFirst().compactMap { line -> Socket? in
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count > 3, let l = endpoint(f[1]), let r = endpoint(f[2]), let st = UInt8(f[3], radix: 16) else { return nil }
            return Socket(local: l, remote: r, state: st)
        }
        let established: UInt8 = 0x01, listen: UInt8 = 0x0a
        let any = IPv4Address(0, 0, 0, 0)
        let listening = Set(sockets.filter { $0.state == listen && ($0.local.address == address || $0.local.address == any) && brickPorts.contains($0.local.port) }
            .map(\.local.port))
        var out: [String: Int] = [:]
        for brick in bricks {
            guard let host = brick.split(separator: ":").first.flatMap({ IPv4Address(String($0)) }) else { continue }
            out[brick] = sockets.filter { s in
                guard s.state == established, s.local.address == address, s.remote.address == host else { return false }
                return host == address ? listening.contains(s.remote.port) && !listening.contains(s.local.port) : brickPorts.contains(s.remote.port)
            }.count
        }
        return out
    }

    public var statusLine: String {
        state.withLock { s in
            s.problem.map { "problem: \($0)" } ?? "volume \(s.config.volume.name) \(s.volume?.status ?? "not ready"), \(s.exports) NFS exports"
        }
    }

    /// Sets (or clears, with nil) the current problem, logging each new one once.
    func note(_ problem: String?) {
        let changed = state.withLock { s -> Bool in
            defer { s.problem = problem }
            return s.problem != problem
        }
        guard changed else { return }
        if let problem { logger.error("\(problem)") } else { logger.notice("volume and exports are in order again") }
    }

    /// Keeps the volume up and the exports in step with the image store until cancelled.
    public func run() async {
        var ready = false
        while !Task.isCancelled {
            do {
                let wasReady = ready
                try await blocking("volume-ensure") {
                    if !wasReady || !Self.isMounted(self.config.volume.mount) { try self.ensureVolume() }
                }
                ready = true
                _ = try await blocking("volume-exports") { try self.syncExports() }
                note(nil)
            } catch {
                note("\(error)")
            }
            try? await Task.sleep(for: config.nfs.scanInterval)
        }
    }
}
