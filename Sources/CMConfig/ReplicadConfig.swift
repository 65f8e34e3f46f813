import CMTypes
import Foundation

/// /etc/clustermaker/replicad.toml: cm-replicad's cluster filesystem (the GlusterFS volume)
/// and its NFS serving (nfs-ganesha's exports). replicad.toml(5).
public struct ReplicadConfig: Sendable, Equatable {
    public struct Volume: Sendable, Equatable {
        /// The GlusterFS volume the suite manages.
        public var name = "clustermaker"
        /// This master's address on the cluster network: its brick's host, and where
        /// ganesha and the FUSE mount fetch the volume's layout.
        public var address = IPv4Address(rawValue: 0)
        /// This master's brick: a directory of a local filesystem.
        public var brick = "/var/lib/clustermaker/brick"
        /// Where the volume is mounted on this master (images/ and shared/ are on it).
        public var mount = "/srv/clustermaker"
        /// glusterd's control socket (the `gluster` command's --glusterd-sock).
        public var glusterdSocket = "/run/glusterd.socket"
        /// How long a brick may be silent before clients give up on it: the stall of a
        /// master failure (GlusterFS's network.ping-timeout, default 42 s).
        public var pingTimeout: Duration = .seconds(3)
    }

    public struct NFS: Sendable, Equatable {
        /// The file ganesha.conf includes (`%include`); written by cm-replicad, renamed into place.
        public var exportsFile = "/etc/ganesha/clustermaker-exports.conf"
        /// ganesha's PID file: a reload is SIGHUP (as nfs-ganesha.service's ExecReload).
        public var ganeshaPidFile = "/run/ganesha/ganesha.pid"
        /// ganesha's systemd unit, restarted when this master leaves the active role (and when
        /// it stays active through a healed partition): ganesha then holds no NFSv4 client state
        /// from before when the nodes come back to it. Without systemd, ganesha is stopped
        /// (SIGTERM) for its supervisor to start again.
        public var ganeshaUnit = "nfs-ganesha.service"
        /// Networks allowed to mount (the cluster network). Required.
        public var clients: [IPv4Network] = []
        /// How often the image store is looked at for new or removed revisions.
        public var scanInterval: Duration = .seconds(2)
    }

    /// Master → standby replication of the daemons' SQLite state through the volume.
    public struct State: Sendable, Equatable {
        /// This master's name: its replicas live in VOLUME/state/NAME on the volume. Unique
        /// among the masters (cluster.toml's [[master]] names); default: the host name.
        public var master = ""
        /// Follow cm-vipd's role: only the active master publishes its state. Off: this
        /// master is always the active one (a single master without cm-vipd).
        public var followVipd = true
        /// How often each database is looked at for commits; a change is copied at once, so
        /// this is most of the recovery point (RPO).
        public var interval: Duration = .milliseconds(50)
        /// The databases replicated, by the daemon that owns each (it asks for its own back
        /// when its master becomes active).
        public var databases: [Database] = [Database(name: "pxed", path: "/var/lib/clustermaker/pxed/pxed.sqlite")]
    }

    public struct Database: Sendable, Equatable {
        public var name: String
        public var path: String
        public init(name: String, path: String) {
            self.name = name
            self.path = path
        }
    }

    public var volume = Volume()
    public var nfs = NFS()
    public var state = State()

    public init() {}

    public static let fileName = "replicad.toml"

    public static func load(configDir: String) throws(ConfigErrors) -> ReplicadConfig {
        try parse(ConfigSource.read((configDir as NSString).appendingPathComponent(fileName)))
    }

    public static func parse(_ source: ConfigSource) throws(ConfigErrors) -> ReplicadConfig {
        let doc = try ConfigDocument(source)
        let root = doc.rootReader
        var config = ReplicadConfig()

        let v = root.table("volume")
        let name = v.string("name", default: "clustermaker")
        if isVolumeName(name) { config.volume.name = name } else {
            v.error("name", "\"\(name)\" is not a GlusterFS volume name (1-64 of A-Z, a-z, 0-9, \"_\", \"-\")")
        }
        config.volume.address = v.ipv4("address", required: true) ?? IPv4Address(rawValue: 0)
        for (key, keyPath) in [("brick", \Volume.brick), ("mount", \Volume.mount), ("glusterd_socket", \Volume.glusterdSocket)] {
            if let d = v.string(key) {
                if d.hasPrefix("/") && !d.contains("\n") && d.count > 1 { config.volume[keyPath: keyPath] = d } else { v.error(key, "\"\(d)\" is not an absolute path") }
            }
        }
        config.volume.pingTimeout = v.duration("ping_timeout", range: .seconds(1) ... .seconds(1800), default: .seconds(3))
        v.finish()

        let n = root.table("nfs")
        for (key, keyPath) in [("exports_file", \NFS.exportsFile), ("ganesha_pid_file", \NFS.ganeshaPidFile)] {
            if let d = n.string(key) {
                if d.hasPrefix("/") && !d.contains("\n") && d.count > 1 { config.nfs[keyPath: keyPath] = d } else { n.error(key, "\"\(d)\" is not an absolute path") }
            }
        }
        if let unit = n.string("ganesha_unit") {
            if unit.hasSuffix(".service"), unit.count > 8, unit.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f && $0 != UInt8(ascii: "/") }) {
                config.nfs.ganeshaUnit = unit
            } else {
                n.error("ganesha_unit", "\"\(unit)\" is not a systemd service unit name (nfs-ganesha.service)")
            }
        }
        if let clients = n.stringArray("clients") {
            for c in clients {
                if let net = IPv4Network(c) { config.nfs.clients.append(net) } else { n.error("clients", "\"\(c)\" is not an IPv4 network (10.77.0.0/24)") }
            }
            if clients.isEmpty { n.error("clients", "at least one network must be allowed to mount") }
        } else {
            n.tableError("missing required key \"clients\" (the cluster network, e.g. [\"10.77.0.0/24\"])")
        }
        config.nfs.scanInterval = n.duration("scan_interval", range: .milliseconds(200) ... .seconds(3600), default: .seconds(2))
        n.finish()

        let st = root.table("state")
        let master = st.string("master", default: Self.hostName())
        if isMasterName(master) { config.state.master = master } else {
            st.error("master", "\"\(master)\" is not a master name (1-63 of a-z, 0-9, \"-\")")
        }
        config.state.followVipd = st.bool("follow_vipd", default: true)
        config.state.interval = st.duration("interval", range: .milliseconds(20) ... .seconds(3600), default: .milliseconds(50))
        st.finish()
        if root.has("database") {
            config.state.databases = []
            for d in root.tables("database") {
                guard let name = d.string("name", required: true), let path = d.string("path", required: true) else { d.finish(); continue }
                if !isMasterName(name) {
                    d.error("name", "\"\(name)\" is not a database name (1-63 of a-z, 0-9, \"-\"; the owning daemon's, e.g. \"pxed\")")
                } else if config.state.databases.contains(where: { $0.name == name }) {
                    d.error("name", "database \"\(name)\" is listed twice")
                } else if !path.hasPrefix("/") || path.contains("\n") || path.hasSuffix("/") {
                    d.error("path", "\"\(path)\" is not an absolute file path")
                } else {
                    config.state.databases.append(Database(name: name, path: path))
                }
                d.finish()
            }
        }
        root.finish()
        try doc.check()
        return config
    }

    /// A master's or database's name: a DNS label in lower case (it names a directory on
    /// the volume).
    public static func isMasterName(_ s: String) -> Bool {
        (1...63).contains(s.utf8.count) && !s.hasPrefix("-")
            && s.utf8.allSatisfy { (0x61...0x7a).contains($0) || (0x30...0x39).contains($0) || $0 == 0x2d }
    }

    static func hostName() -> String {
        var buf = [UInt8](repeating: 0, count: 256)
        guard gethostname(&buf, buf.count - 1) == 0 else { return "master" }
        let name = String(decoding: buf.prefix { $0 != 0 }, as: UTF8.self).split(separator: ".").first.map(String.init)?.lowercased() ?? "master"
        return isMasterName(name) ? name : "master"
    }

    public static func isVolumeName(_ s: String) -> Bool {
        (1...64).contains(s.utf8.count) && s.utf8.allSatisfy { TOMLPositions.isBare($0) }
    }
}
