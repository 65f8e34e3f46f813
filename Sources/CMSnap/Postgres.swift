import CMConfig
import CMTypes
import Foundation

/// A PostgreSQL cluster snapshotted while it serves: pg_basebackup (the server's own online
/// backup: a checkpoint, the data directory copied, the WAL written meanwhile streamed beside
/// it, so that the copy replays to the moment the backup ended). Every program runs as the
/// data set's system user, which the server lets in by peer authentication over its socket.
public struct PostgresCluster: Sendable {
    public let dataDirectory: String
    public let socketDirectory: String
    public let port: Int
    public let user: String
    public let systemUser: String
    public var maxRate: String?

    public init(_ set: SnapdConfig.DataSet) {
        dataDirectory = set.paths[0]
        socketDirectory = set.socketDirectory
        port = set.port
        user = set.user
        systemUser = set.systemUser
        maxRate = set.maxRate
    }

    /// Debian's programs for the cluster's major version (PG_VERSION in its data directory).
    public static func binDirectory(forDataDirectory dir: String) throws -> String {
        guard let v = FileManager.default.contents(atPath: "\(dir)/PG_VERSION").map({ String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) }),
              !v.isEmpty, v.allSatisfy(\.isNumber) else {
            throw SnapshotError("\(dir) is not a PostgreSQL data directory (no PG_VERSION)")
        }
        let bin = "/usr/lib/postgresql/\(v)/bin"
        guard FileManager.default.isExecutableFile(atPath: "\(bin)/pg_basebackup") else {
            throw SnapshotError("\(bin)/pg_basebackup is missing (Debian's postgresql-\(v) has it)")
        }
        return bin
    }

    /// `program` run as the system user.
    func run(_ program: String, _ args: [String], timeout: Duration? = nil) throws -> ChildProcess.Result {
        let r = try ChildProcess.run("/usr/sbin/runuser", ["-u", systemUser, "--", program] + args, timeout: timeout)
        guard r.succeeded else {
            throw SnapshotError("\((program as NSString).lastPathComponent): \(r.failure(program, timeout: timeout))")
        }
        return r
    }

    /// Why an atomic btrfs snapshot of the data directory is a consistent copy of the cluster,
    /// or nil when it is not: the data directory must be a subvolume on the store's btrfs,
    /// with its WAL inside it (pg_wal not a link elsewhere) and no tablespace outside it.
    public func atomicSnapshotReason(store: String) throws -> String? {
        guard try SnapshotBackend.choose(source: dataDirectory, store: store).backend == .btrfsSubvolume else { return nil }
        var st = stat()
        guard lstat("\(dataDirectory)/pg_wal", &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else { return nil }
        let tablespaces = (try? FileManager.default.contentsOfDirectory(atPath: "\(dataDirectory)/pg_tblspc")) ?? []
        guard tablespaces.isEmpty else { return nil }
        return "\(dataDirectory) is a btrfs subvolume holding its WAL: an atomic snapshot, crash-consistent, the server undisturbed"
    }

    /// The copy written into `tree`, which is made for the system user (the directories above
    /// it must let that user through: the store's are 0711).
    public func basebackup(into tree: String) throws {
        let bin = try Self.binDirectory(forDataDirectory: dataDirectory)
        guard let pw = getpwnam(systemUser) else { throw SnapshotError("no system user \(systemUser)") }
        try FileManager.default.createDirectory(atPath: tree, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        guard chown(tree, pw.pointee.pw_uid, pw.pointee.pw_gid) == 0 else { throw SnapshotError("chown \(tree): \(String(cString: strerror(errno)))") }
        _ = chmod((tree as NSString).deletingLastPathComponent, 0o711)
        // -c fast: the checkpoint now rather than spread over checkpoint_timeout; -X stream:
        // the WAL of the backup's duration on a second connection, so it is all in the copy.
        _ = try run("\(bin)/pg_basebackup", ["-D", tree, "-X", "stream", "-c", "fast", "-w",
                                             "-h", socketDirectory, "-p", "\(port)", "-U", user, "-l", "cm-snapd"]
                                            + (maxRate.map { ["-r", $0] } ?? []))
    }

    /// Starts a copy of the cluster (a snapshot restored to `directory`) on a private socket,
    /// lets it replay its WAL, runs pg_amcheck on every database, stops it. Returns what
    /// pg_amcheck said (nothing when all is well); throws if the copy does not start or a
    /// check fails.
    public static func verify(copy directory: String, systemUser: String, user: String) throws -> String {
        let bin = try binDirectory(forDataDirectory: directory)
        let sock = NSTemporaryDirectory() + "cm-snapd-verify-\(UInt32.random(in: 0 ... .max))"
        guard let pw = getpwnam(systemUser) else { throw SnapshotError("no system user \(systemUser)") }
        try FileManager.default.createDirectory(atPath: sock, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(atPath: sock) }
        _ = chown(sock, pw.pointee.pw_uid, pw.pointee.pw_gid)
        try completeConfiguration(directory)
        let pg = PostgresCluster(dataDirectory: directory, socketDirectory: sock, port: 5432, user: user, systemUser: systemUser)
        // No TCP listener: the copy is reachable only through the private socket directory.
        do {
            _ = try pg.run("\(bin)/pg_ctl", ["-D", directory, "-w", "-t", "300", "-l", "\(sock)/postgres.log", "-o",
                                         "-p 5432 -k \(sock) -c listen_addresses='' -c archive_mode=off", "start"], timeout: .seconds(330))
        } catch {
            let tail = (try? String(contentsOfFile: "\(sock)/postgres.log", encoding: .utf8))?.split(separator: "\n").suffix(3).joined(separator: " | ") ?? ""
            throw SnapshotError("the restored copy does not start: \(error)\(tail.isEmpty ? "" : ": \(tail)")")
        }
        defer { _ = try? pg.run("\(bin)/pg_ctl", ["-D", directory, "-w", "-m", "fast", "stop"], timeout: .seconds(120)) }
        let r = try pg.run("\(bin)/pg_amcheck", ["-h", sock, "-p", "5432", "-U", user, "--all", "--install-missing", "--heapallindexed"],
                           timeout: .seconds(1800))
        return r.text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    init(dataDirectory: String, socketDirectory: String, port: Int, user: String, systemUser: String) {
        self.dataDirectory = dataDirectory
        self.socketDirectory = socketDirectory
        self.port = port
        self.user = user
        self.systemUser = systemUser
    }

    /// Debian keeps a cluster's postgresql.conf and pg_hba.conf in /etc/postgresql, outside
    /// the data directory and so outside its snapshots: a copy started on its own gets
    /// minimal ones (peer authentication on the socket only). Returns the files it wrote.
    @discardableResult
    public static func completeConfiguration(_ directory: String) throws -> [String] {
        var wrote: [String] = []
        var st = stat()
        guard stat(directory, &st) == 0 else { throw SnapshotError("\(directory): \(String(cString: strerror(errno)))") }
        for (name, text) in [("postgresql.conf", "# written by cm-snapd for a restored copy: the cluster's own is in /etc/postgresql\n"),
                             ("pg_hba.conf", "# written by cm-snapd for a restored copy: local connections only\nlocal all all peer\n"),
                             ("pg_ident.conf", "")] {
            let path = "\(directory)/\(name)"
            guard !FileManager.default.fileExists(atPath: path) else { continue }
            guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]) else {
                throw SnapshotError("cannot write \(path)")
            }
            _ = chown(path, st.st_uid, st.st_gid)
            wrote.append(name)
        }
        return wrote
    }
}
