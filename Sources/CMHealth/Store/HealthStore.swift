import CMStore
import CMTypes
import CMWire
import Foundation
import GRDB

public struct StoredSeries: Sendable, Equatable {
    public var name: String
    public var resolution: String
    public var points: [(ms: Int64, value: Double)]

    public static func == (a: Self, b: Self) -> Bool {
        a.name == b.name && a.resolution == b.resolution && a.points.elementsEqual(b.points, by: { $0.ms == $1.ms && $0.value == $1.value })
    }

    public var wire: MetricSeries {
        MetricSeries(name: name, resolution: resolution,
                     points: points.map { MetricPoint(t: Date(timeIntervalSince1970: Double($0.ms) / 1000), v: $0.value) })
    }
}

/// cm-healthd's database: transition history and node metric series with downsampling
/// (raw samples → 1-minute → 1-hour aggregates, each kept for its own retention).
/// Thread-safe: GRDB's pool serializes writes; the daemon is the only writer.
public final class HealthStore: Sendable {
    let pool: DatabasePool
    static let minute: Int64 = 60_000
    static let hour: Int64 = 3_600_000

    public init(path: String) throws {
        pool = try Store.open(path: path, migrations: [
            Store.Migration("v1-transitions") { db in
                try db.execute(sql: """
                    CREATE TABLE transitions (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        check_id TEXT NOT NULL, from_state TEXT NOT NULL, to_state TEXT NOT NULL,
                        at INTEGER NOT NULL, message TEXT NOT NULL);
                    CREATE INDEX transitions_by_check ON transitions(check_id, id);
                    CREATE INDEX transitions_by_time ON transitions(at);
                    """)
            },
            Store.Migration("v1-metrics") { db in
                try db.execute(sql: """
                    CREATE TABLE samples_raw (node TEXT NOT NULL, series TEXT NOT NULL, ts INTEGER NOT NULL, value REAL NOT NULL,
                        PRIMARY KEY (node, series, ts)) WITHOUT ROWID;
                    CREATE TABLE samples_1m (node TEXT NOT NULL, series TEXT NOT NULL, bucket INTEGER NOT NULL,
                        avg REAL NOT NULL, min REAL NOT NULL, max REAL NOT NULL, count INTEGER NOT NULL,
                        PRIMARY KEY (node, series, bucket)) WITHOUT ROWID;
                    CREATE TABLE samples_1h (node TEXT NOT NULL, series TEXT NOT NULL, bucket INTEGER NOT NULL,
                        avg REAL NOT NULL, min REAL NOT NULL, max REAL NOT NULL, count INTEGER NOT NULL,
                        PRIMARY KEY (node, series, bucket)) WITHOUT ROWID;
                    CREATE INDEX samples_raw_by_time ON samples_raw(ts);
                    CREATE TABLE rollup_watermarks (resolution TEXT PRIMARY KEY, upto INTEGER NOT NULL);
                    INSERT INTO rollup_watermarks VALUES ('1m', 0), ('1h', 0);
                    """)
            },
        ])
    }

    // MARK: Transitions

    /// Stores one state change (the wire's `HealthTransition`, as published).
    public func record(_ t: HealthTransition) throws {
        try pool.write { db in
            try db.execute(sql: "INSERT INTO transitions (check_id, from_state, to_state, at, message) VALUES (?, ?, ?, ?, ?)",
                           arguments: [t.id.description, t.from.rawValue, t.to.rawValue, Self.ms(t.at), t.message])
        }
    }

    /// Newest first.
    public func transitions(check: CheckID?, sinceMs: Int64?, limit: Int) throws -> [HealthTransition] {
        try transitions(check: check, sinceMs: sinceMs, beforeID: nil, limit: limit).records
    }

    /// One page of history, newest first: at most `limit` transitions with row ids below
    /// `beforeID`, and the id to go on below when there are more.
    public func transitions(check: CheckID?, sinceMs: Int64?, beforeID: Int64?, limit: Int) throws -> (records: [HealthTransition], next: Int64?) {
        try pool.read { db in
            var sql = "SELECT check_id, from_state, to_state, at, message, id FROM transitions WHERE 1"
            var args: [any DatabaseValueConvertible] = []
            if let check { sql += " AND check_id = ?"; args.append(check.description) }
            if let sinceMs { sql += " AND at >= ?"; args.append(sinceMs) }
            if let beforeID { sql += " AND id < ?"; args.append(beforeID) }
            sql += " ORDER BY id DESC LIMIT ?"
            args.append(limit + 1)
            let rows = try Row.fetchAll(db, sql: sql, arguments: StatementArguments(args))
            let page = rows.prefix(limit)
            return (page.compactMap(Self.transition), rows.count > limit ? page.last.map { $0[5] as Int64 } : nil)
        }
    }

    /// The latest state of every check and when it began, to resume after a restart.
    public func lastStatesWithTime() throws -> [CheckID: (HealthState, Date)] {
        try pool.read { db in
            let rows = try Row.fetchAll(db, sql: """
                SELECT check_id, from_state, to_state, at, message FROM transitions
                WHERE id IN (SELECT MAX(id) FROM transitions GROUP BY check_id)
                """)
            var out: [CheckID: (HealthState, Date)] = [:]
            for t in rows.compactMap(Self.transition) { out[t.id] = (t.to, t.at) }
            return out
        }
    }

    public func pruneTransitions(olderThanMs cutoff: Int64) throws {
        try pool.write { db in try db.execute(sql: "DELETE FROM transitions WHERE at < ?", arguments: [cutoff]) }
    }

    private static func transition(_ row: Row) -> HealthTransition? {
        guard let id = CheckID(row[0] as String), let from = CheckState(rawValue: row[1]), let to = CheckState(rawValue: row[2]) else { return nil }
        return HealthTransition(id: id, from: from, to: to, at: Date(timeIntervalSince1970: Double(row[3] as Int64) / 1000), message: row[4])
    }

    static func ms(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1000).rounded()) }

    // MARK: Metrics

    /// One transaction for the whole batch: 1,000 nodes × a dozen series is one write.
    public func insert(batch: [(NodeName, Int64, [String: Double])]) throws {
        try pool.write { db in
            let statement = try db.cachedStatement(sql: "INSERT OR REPLACE INTO samples_raw (node, series, ts, value) VALUES (?, ?, ?, ?)")
            for (node, ts, values) in batch {
                for (series, value) in values where value.isFinite {
                    try statement.execute(arguments: [node.rawValue, series, ts, value])
                }
            }
        }
    }

    /// Rolls complete minutes into 1-minute aggregates and complete hours into 1-hour ones,
    /// each exactly once (a watermark per resolution), then deletes what outlived its retention.
    public func maintain(nowMs: Int64, rawRetention: Duration, minuteRetention: Duration, hourRetention: Duration) throws {
        // A few seconds' grace: samples are flushed up to a second after they were taken.
        let settled = nowMs - 5_000
        try pool.write { db in
            let m0 = try Int64.fetchOne(db, sql: "SELECT upto FROM rollup_watermarks WHERE resolution = '1m'") ?? 0
            let m1 = settled / Self.minute * Self.minute
            if m1 > m0 {
                try db.execute(sql: """
                    INSERT OR REPLACE INTO samples_1m (node, series, bucket, avg, min, max, count)
                    SELECT node, series, ts / \(Self.minute) * \(Self.minute), AVG(value), MIN(value), MAX(value), COUNT(*)
                    FROM samples_raw WHERE ts >= ? AND ts < ? GROUP BY node, series, ts / \(Self.minute)
                    """, arguments: [m0, m1])
                try db.execute(sql: "UPDATE rollup_watermarks SET upto = ? WHERE resolution = '1m'", arguments: [m1])
            }
            let h0 = try Int64.fetchOne(db, sql: "SELECT upto FROM rollup_watermarks WHERE resolution = '1h'") ?? 0
            let h1 = m1 / Self.hour * Self.hour
            if h1 > h0 {
                try db.execute(sql: """
                    INSERT OR REPLACE INTO samples_1h (node, series, bucket, avg, min, max, count)
                    SELECT node, series, bucket / \(Self.hour) * \(Self.hour), SUM(avg * count) / SUM(count), MIN(min), MAX(max), SUM(count)
                    FROM samples_1m WHERE bucket >= ? AND bucket < ? GROUP BY node, series, bucket / \(Self.hour)
                    """, arguments: [h0, h1])
                try db.execute(sql: "UPDATE rollup_watermarks SET upto = ? WHERE resolution = '1h'", arguments: [h1])
            }
            try db.execute(sql: "DELETE FROM samples_raw WHERE ts < ?", arguments: [nowMs - rawRetention.milliseconds])
            try db.execute(sql: "DELETE FROM samples_1m WHERE bucket < ?", arguments: [nowMs - minuteRetention.milliseconds])
            try db.execute(sql: "DELETE FROM samples_1h WHERE bucket < ?", arguments: [nowMs - hourRetention.milliseconds])
        }
    }

    /// A range query. The finest resolution that still covers `sinceMs` answers: raw inside
    /// the raw retention, else 1-minute, else 1-hour averages; the newest part that has not
    /// been rolled up yet is aggregated from the finer table on the fly.
    public func query(node: NodeName, series: [String]?, sinceMs: Int64, untilMs: Int64,
                      rawRetention: Duration, minuteRetention: Duration, nowMs: Int64? = nil) throws -> [StoredSeries] {
        let now = nowMs ?? Self.ms(Date())
        let resolution = sinceMs >= now - rawRetention.milliseconds ? "raw" : sinceMs >= now - minuteRetention.milliseconds ? "1m" : "1h"
        return try pool.read { db in
            let sql: String
            switch resolution {
            case "raw":
                sql = "SELECT series, ts, value FROM samples_raw WHERE node = ?1 AND ts >= ?2 AND ts <= ?3"
            case "1m":
                sql = """
                    SELECT series, bucket, avg FROM samples_1m WHERE node = ?1 AND bucket >= ?2 AND bucket <= ?3
                    UNION ALL
                    SELECT series, ts / \(Self.minute) * \(Self.minute), AVG(value) FROM samples_raw
                    WHERE node = ?1 AND ts >= MAX(?2, (SELECT upto FROM rollup_watermarks WHERE resolution = '1m')) AND ts <= ?3
                    GROUP BY series, ts / \(Self.minute)
                    """
            default:
                sql = """
                    SELECT series, bucket, avg FROM samples_1h WHERE node = ?1 AND bucket >= ?2 AND bucket <= ?3
                    UNION ALL
                    SELECT series, bucket / \(Self.hour) * \(Self.hour), SUM(avg * count) / SUM(count) FROM samples_1m
                    WHERE node = ?1 AND bucket >= MAX(?2, (SELECT upto FROM rollup_watermarks WHERE resolution = '1h')) AND bucket <= ?3
                    GROUP BY series, bucket / \(Self.hour)
                    """
            }
            var bySeries: [String: [(ms: Int64, value: Double)]] = [:]
            let wanted = series.map(Set.init)
            for row in try Row.fetchAll(db, sql: sql, arguments: [node.rawValue, sinceMs, untilMs]) {
                let name: String = row[0]
                if let wanted, !wanted.contains(name) { continue }
                bySeries[name, default: []].append((row[1], row[2]))
            }
            return bySeries.keys.sorted().map { name in
                StoredSeries(name: name, resolution: resolution, points: (bySeries[name] ?? []).sorted { $0.ms < $1.ms })
            }
        }
    }
}
