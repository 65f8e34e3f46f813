import Foundation
import GRDB

/// A daemon's SQLite database: WAL mode, one writer (the daemon), migrations applied at open.
public enum Store {
    public struct Migration: Sendable {
        public var name: String
        public var apply: @Sendable (Database) throws -> Void
        public init(_ name: String, _ apply: @escaping @Sendable (Database) throws -> Void) {
            self.name = name
            self.apply = apply
        }
    }

    public struct OpenError: Error, CustomStringConvertible {
        public var path: String
        public var reason: String
        public var description: String { "\(path): \(reason)" }
    }

    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    public static func open(path: String, migrations: [Migration]) throws -> DatabasePool {
        do {
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            var configuration = Configuration()
            configuration.busyMode = .timeout(5)
            configuration.prepareDatabase { db in
                // NORMAL is durable across application crashes in WAL mode (kill -9 loses nothing
                // committed); only a power loss can lose the last transactions.
                try db.execute(sql: "PRAGMA synchronous = NORMAL")
            }
            let pool = try DatabasePool(path: path, configuration: configuration)
            var migrator = DatabaseMigrator()
            for m in migrations { migrator.registerMigration(m.name, migrate: m.apply) }
            try migrator.migrate(pool)
            return pool
        } catch let error as DatabaseError {
            throw OpenError(path: path, reason: error.message ?? "\(error)")
        } catch {
            throw OpenError(path: path, reason: "\(error)")
        }
    }
}
