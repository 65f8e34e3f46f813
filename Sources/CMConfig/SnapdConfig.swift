import CMTypes
import Foundation

/// /etc/clustermaker/snapd.toml: cm-snapd's restore points of the master's state and its
/// online snapshots of data sets and databases. snapd.toml(5).
public struct SnapdConfig: Sendable, Equatable {
    /// What a data set is, and so how it is snapshotted and restored.
    public enum Kind: String, Sendable, Equatable, CaseIterable {
        /// Directories: a btrfs subvolume snapshot, a reflink copy or a hard-link tree.
        case directory
        /// One SQLite database file: SQLite's online backup API.
        case sqlite
        /// A PostgreSQL cluster (its data directory): pg_basebackup, the server serving.
        case postgresql
    }

    public struct DataSet: Sendable, Equatable {
        /// "system" for the restore points; a data set's own name otherwise.
        public var name: String
        public var kind: Kind
        /// Directories (directory), the database file (sqlite), the data directory (postgresql).
        public var paths: [String]
        /// Left out of a directory data set's snapshots (absolute paths inside its paths).
        public var exclude: [String] = []
        /// Units stopped before a whole restore of this data set and started after it.
        public var services: [String] = []
        /// Taken on the timeline (and pruned by its retention).
        public var timeline = true
        /// Where this data set's snapshots go instead of STORE/NAME: on the filesystem of its
        /// data, for btrfs snapshots and reflinks when the common store is elsewhere.
        public var store: String?
        /// postgresql: where the server's Unix socket is, its port, the role and the system
        /// user pg_basebackup and pg_amcheck run as (peer authentication).
        public var socketDirectory = "/var/run/postgresql"
        public var port = 5432
        public var user = "postgres"
        public var systemUser = "postgres"
        /// postgresql: pg_basebackup's --max-rate ("50M", "512k"): how fast a snapshot may read
        /// the data directory, so that it does not starve the server's own I/O. Nil: no limit.
        public var maxRate: String?

        public init(name: String, kind: Kind, paths: [String]) {
            self.name = name
            self.kind = kind
            self.paths = paths
        }
    }

    public struct Timeline: Sendable, Equatable {
        public var enabled = true
        public var interval: Duration = .seconds(3600)
        public var hourly = 10
        public var daily = 10
        public var weekly = 0
        public var monthly = 10
        public var yearly = 10
        public var minAge: Duration = .seconds(1800)
    }

    /// Where every snapshot is kept (one directory per data set). A data set's directory
    /// backends need it on the same filesystem for reflinks and subvolume snapshots.
    public var store = "/var/lib/clustermaker/snapshots"
    /// How services are stopped and started around a restore: called as
    /// `PROGRAM stop UNIT...` and `PROGRAM start UNIT...`.
    public var serviceControl = "/usr/bin/systemctl"
    /// The system restore points (data set "system").
    public var system = DataSet(name: "system", kind: .directory, paths: ["/etc", "/var/lib/clustermaker"])
    public var data: [DataSet] = []
    public var timeline = Timeline()
    /// How many pre, post and safety snapshots each data set keeps, newest first (snapper's
    /// NUMBER_LIMIT for its apt pairs); those younger than the timeline's min_age are kept
    /// too. Snapshots taken by hand are never removed but by hand.
    public var numberLimit = 50

    public init() {
        system.exclude = ["/var/lib/clustermaker/brick"]
        system.services = ["cm-healthd.service", "cm-lbd.service", "cm-vipd.service", "cm-pxed.service", "cm-replicad.service", "cm-webd.service"]
    }

    /// The system restore points first, then the data sets in the file's order.
    public var dataSets: [DataSet] { [system] + data }

    /// Where `set`'s snapshots are kept.
    public func storeDirectory(of set: DataSet) -> String { set.store ?? "\(store)/\(set.name)" }

    public static let fileName = "snapd.toml"

    public static func load(configDir: String) throws(ConfigErrors) -> SnapdConfig {
        try parse(ConfigSource.read((configDir as NSString).appendingPathComponent(fileName)))
    }

    public static func parse(_ source: ConfigSource) throws(ConfigErrors) -> SnapdConfig {
        let doc = try ConfigDocument(source)
        let root = doc.rootReader
        var config = SnapdConfig()

        let s = root.table("snapd")
        if let p = absolutePath(s, "store") { config.store = p }
        if let p = absolutePath(s, "service_control") { config.serviceControl = p }
        s.finish()

        let sys = root.table("system")
        if let paths = sys.stringArray("paths") {
            let good = paths.filter { isAbsolute($0) }
            for p in paths where !isAbsolute(p) { sys.error("paths", "\"\(p)\" is not an absolute path") }
            if paths.isEmpty { sys.error("paths", "at least one directory (\"/etc\")") }
            config.system.paths = good.map { ($0 as NSString).standardizingPath }
        }
        readCommon(sys, into: &config.system)
        sys.finish()

        let t = root.table("timeline")
        config.timeline.enabled = t.bool("enabled", default: true)
        config.timeline.interval = t.duration("interval", range: .seconds(1) ... .seconds(86400 * 31), default: .seconds(3600))
        config.timeline.hourly = t.int("hourly", range: 0...10000, default: 10)
        config.timeline.daily = t.int("daily", range: 0...10000, default: 10)
        config.timeline.weekly = t.int("weekly", range: 0...10000, default: 0)
        config.timeline.monthly = t.int("monthly", range: 0...10000, default: 10)
        config.timeline.yearly = t.int("yearly", range: 0...10000, default: 10)
        config.timeline.minAge = t.duration("min_age", range: .seconds(0) ... .seconds(86400 * 366), default: .seconds(1800))
        t.finish()

        let c = root.table("cleanup")
        config.numberLimit = c.int("number_limit", range: 1...100_000, default: 50)
        c.finish()

        for d in root.tables("data") {
            guard let name = d.string("name", required: true), let type = d.string("type", required: true),
                  let path = d.string("path", required: true) else { d.finish(); continue }
            guard isDataSetName(name), name != "system" else {
                d.error("name", "\"\(name)\" is not a data set name (1-63 of a-z, 0-9, \"-\"; \"system\" is the restore points')")
                d.finish()
                continue
            }
            guard !config.data.contains(where: { $0.name == name }) else {
                d.error("name", "data set \"\(name)\" is named twice")
                d.finish()
                continue
            }
            guard let kind = Kind(rawValue: type) else {
                d.error("type", "\"\(type)\" is not a data set type (directory, sqlite, postgresql)")
                d.finish()
                continue
            }
            guard isAbsolute(path) else {
                d.error("path", "\"\(path)\" is not an absolute path")
                d.finish()
                continue
            }
            var set = DataSet(name: name, kind: kind, paths: [(path as NSString).standardizingPath])
            readCommon(d, into: &set)
            if kind == .postgresql {
                if let p = absolutePath(d, "socket_directory") { set.socketDirectory = p }
                set.port = d.int("port", range: 1...65535, default: 5432)
                set.user = d.string("user", default: "postgres")
                set.systemUser = d.string("system_user", default: "postgres")
                if let rate = d.string("max_rate") {
                    if rate.range(of: "^[0-9]+[kM]?$", options: .regularExpression) != nil { set.maxRate = rate } else {
                        d.error("max_rate", "\"\(rate)\" is not a rate (kB/s, or with k or M: \"50M\")")
                    }
                }
            }
            config.data.append(set)
            d.finish()
        }
        root.finish()
        try doc.check()
        return config
    }

    static func readCommon(_ t: TableReader, into set: inout DataSet) {
        if let ex = t.stringArray("exclude") {
            for p in ex where !isAbsolute(p) { t.error("exclude", "\"\(p)\" is not an absolute path") }
            set.exclude = ex.filter { isAbsolute($0) }.map { ($0 as NSString).standardizingPath }
        }
        if let services = t.stringArray("services") {
            for u in services where !isUnitName(u) { t.error("services", "\"\(u)\" is not a unit name (\"postgresql@15-main.service\")") }
            set.services = services.filter(isUnitName)
        }
        set.timeline = t.bool("timeline", default: true)
        set.store = absolutePath(t, "store")
    }

    static func absolutePath(_ t: TableReader, _ key: String) -> String? {
        guard let p = t.string(key) else { return nil }
        guard isAbsolute(p) else {
            t.error(key, "\"\(p)\" is not an absolute path")
            return nil
        }
        return (p as NSString).standardizingPath
    }

    static func isAbsolute(_ p: String) -> Bool { p.hasPrefix("/") && !p.contains("\n") && !p.contains("\0") }

    /// A data set's name: it names a directory of the store and appears in commands.
    public static func isDataSetName(_ s: String) -> Bool {
        (1...63).contains(s.utf8.count) && !s.hasPrefix("-")
            && s.utf8.allSatisfy { (0x61...0x7a).contains($0) || (0x30...0x39).contains($0) || $0 == 0x2d }
    }

    /// systemd's unit names: letters, digits and ":-_.\@", with a type suffix.
    static func isUnitName(_ s: String) -> Bool {
        (1...255).contains(s.utf8.count) && s.contains(".") && !s.hasPrefix("-")
            && s.utf8.allSatisfy { c in (0x41...0x5a).contains(c) || (0x61...0x7a).contains(c) || (0x30...0x39).contains(c) || ":-_.\\@".utf8.contains(c) }
    }
}
