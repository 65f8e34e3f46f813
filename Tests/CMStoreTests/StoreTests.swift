import CMStore
import Foundation
import GRDB
import Testing

@Suite struct StoreTests {
    @Test func migrationsRunOnceAndWALIsOn() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("cm-store-\(UUID().uuidString.prefix(8))/x/db.sqlite").path
        defer { try? FileManager.default.removeItem(atPath: ((path as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent) }
        let migrations = [
            Store.Migration("v1") { db in try db.execute(sql: "CREATE TABLE t (x INTEGER)") },
            Store.Migration("v2") { db in try db.execute(sql: "INSERT INTO t VALUES (1)") },
        ]
        do {
            let pool = try Store.open(path: path, migrations: migrations)
            #expect(try pool.read { try String.fetchOne($0, sql: "PRAGMA journal_mode") } == "wal")
        }
        let again = try Store.open(path: path, migrations: migrations)
        #expect(try again.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM t") } == 1, "v2 ran once")
        let more = try Store.open(path: path, migrations: migrations + [Store.Migration("v3") { db in try db.execute(sql: "INSERT INTO t VALUES (3)") }])
        #expect(try more.read { try Int.fetchOne($0, sql: "SELECT SUM(x) FROM t") } == 4)
    }

    @Test func unopenablePathIsNamed() {
        do {
            _ = try Store.open(path: "/proc/cm-cannot/db.sqlite", migrations: [])
            Issue.record("opened a database under /proc")
        } catch {
            #expect("\(error)".hasPrefix("/proc/cm-cannot/db.sqlite: "))
        }
    }
}
