import Foundation
import GRDB

/// SQLite databases copied while they are written: SQLite's online backup API
/// (https://sqlite.org/backup.html) copies every page under one read transaction, so the copy
/// is the database as of one commit, and in WAL mode the writers never wait for it.
public enum SQLiteCopy {
    /// The first 16 bytes of every SQLite 3 database file.
    static let magic = Array("SQLite format 3\u{0}".utf8)

    /// Names a database is looked for under in a directory tree (a file's header decides).
    static let suffixes = [".sqlite", ".sqlite3", ".db"]

    /// A database's -wal, -shm or -journal file, by its name.
    static func isSidecar(_ path: String) -> Bool {
        for side in ["-wal", "-shm", "-journal"] where path.hasSuffix(side) {
            let base = path.dropLast(side.count)
            return suffixes.contains { base.hasSuffix($0) }
        }
        return false
    }

    public static func isDatabase(_ path: String) -> Bool {
        guard let h = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? h.close() }
        return (try? h.read(upToCount: 16)).map { Array($0) == magic } ?? false
    }

    /// A consistent copy of the database at `from` written to `to` (replaced, its -wal and
    /// -shm removed first), owner and mode as the source's.
    public static func backup(from: String, to: String) throws {
        for suffix in ["", "-wal", "-shm", "-journal"] { unlink(to + suffix) }
        do {
            var config = Configuration()
            config.readonly = true
            config.busyMode = .timeout(10)
            let source = try DatabaseQueue(path: from, configuration: config)
            let copy = try DatabaseQueue(path: to)
            try source.backup(to: copy)
            // Out of WAL mode: the copy is one file, whatever the source's journal.
            try copy.writeWithoutTransaction { try $0.execute(sql: "PRAGMA journal_mode=DELETE") }
            try copy.close()
            try source.close()
        } catch {
            throw SnapshotError("copying the SQLite database \(from): \(error)")
        }
        var st = stat()
        if stat(from, &st) == 0 {
            _ = chown(to, st.st_uid, st.st_gid)
            _ = chmod(to, st.st_mode & 0o7777)
        }
    }

    /// Writes the snapshot copy at `from` into the live database `to` with the same API:
    /// other connections see the old database or the restored one, never half of each.
    public static func restore(from: String, into to: String) throws {
        do {
            var config = Configuration()
            config.readonly = true
            let source = try DatabaseQueue(path: from, configuration: config)
            var target = Configuration()
            target.busyMode = .timeout(10)
            let live = try DatabaseQueue(path: to, configuration: target)
            try source.backup(to: live)
            try live.close()
            try source.close()
        } catch {
            throw SnapshotError("restoring the SQLite database \(to): \(error)")
        }
    }

    /// SQLite's `PRAGMA integrity_check`: "ok", or what it found wrong.
    public static func integrityCheck(_ path: String) throws -> String {
        do {
            var config = Configuration()
            config.readonly = true
            let db = try DatabaseQueue(path: path, configuration: config)
            defer { try? db.close() }
            let rows = try db.read { try String.fetchAll($0, sql: "PRAGMA integrity_check") }
            return rows.joined(separator: "; ")
        } catch {
            throw SnapshotError("checking \(path): \(error)")
        }
    }

    /// Makes every SQLite database found under `source` again in `tree` (its copy) with the
    /// backup API: a file copied while a daemon writes it may hold half a transaction.
    static func refreshDatabases(in tree: String, from source: String, skip: (String) -> Bool) throws {
        guard let walker = FileManager.default.enumerator(atPath: source) else { return }
        while let rel = walker.nextObject() as? String {
            if skip(rel) {
                walker.skipDescendants()
                continue
            }
            guard suffixes.contains(where: { rel.hasSuffix($0) }) else { continue }
            let from = "\(source)/\(rel)", to = "\(tree)/\(rel)"
            var st = stat()
            guard lstat(from, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, isDatabase(from),
                  FileManager.default.fileExists(atPath: to) else { continue }
            try backup(from: from, to: to)
        }
    }
}
