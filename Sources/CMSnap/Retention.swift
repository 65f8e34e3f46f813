import Foundation

/// How many timeline snapshots to keep, as snapper's TIMELINE_LIMIT_* do: the first snapshot
/// of each of the newest `hourly` hours that have one, of the newest `daily` days, `weekly`
/// ISO weeks, `monthly` months and `yearly` years; and any younger than `minAge` (snapper's
/// TIMELINE_MIN_AGE), so that a burst of snapshots is not pruned as it is made.
public struct RetentionPolicy: Sendable, Equatable {
    public var hourly: Int
    public var daily: Int
    public var weekly: Int
    public var monthly: Int
    public var yearly: Int
    public var minAge: Duration

    /// snapper's defaults for a new configuration (10 hourly, 10 daily, 0 weekly, 10 monthly,
    /// 10 yearly, 30 minutes).
    public init(hourly: Int = 10, daily: Int = 10, weekly: Int = 0, monthly: Int = 10, yearly: Int = 10, minAge: Duration = .seconds(1800)) {
        self.hourly = hourly
        self.daily = daily
        self.weekly = weekly
        self.monthly = monthly
        self.yearly = yearly
        self.minAge = minAge
    }
}

/// Timeline pruning: pure, so that a fake clock tests it.
public enum Retention {
    public struct Entry: Sendable, Equatable {
        public var id: Int
        public var date: Date
        public init(id: Int, date: Date) {
            self.id = id
            self.date = date
        }
    }

    /// The ids to remove from `snapshots` (timeline ones only) under `policy` at `now`.
    /// Periods are counted in `calendar` (UTC by default: a daylight-saving change does not
    /// make two "first of the day" snapshots).
    public static func prune(_ snapshots: [Entry], policy: RetentionPolicy, now: Date, calendar: Calendar = utc) -> [Int] {
        let ordered = snapshots.sorted { ($0.date, $0.id) < ($1.date, $1.id) }
        var keep = Set<Int>()
        let minAge = Double(policy.minAge.components.seconds)
        for s in ordered where now.timeIntervalSince(s.date) < minAge { keep.insert(s.id) }
        let periods: [(count: Int, components: Set<Calendar.Component>)] = [
            (policy.hourly, [.year, .month, .day, .hour]),
            (policy.daily, [.year, .month, .day]),
            (policy.weekly, [.yearForWeekOfYear, .weekOfYear]),
            (policy.monthly, [.year, .month]),
            (policy.yearly, [.year]),
        ]
        for (count, components) in periods where count > 0 {
            // The first (oldest) snapshot of each period, then the newest `count` periods.
            var firsts: [(key: DateComponents, id: Int)] = []
            for s in ordered {
                let key = calendar.dateComponents(components, from: s.date)
                if firsts.last?.key != key { firsts.append((key, s.id)) }
            }
            for f in firsts.suffix(count) { keep.insert(f.id) }
        }
        return ordered.map(\.id).filter { !keep.contains($0) }
    }

    /// The ids to remove so that `limit` of `snapshots` are left, oldest first, none younger
    /// than `minAge` (snapper's number cleanup).
    public static func pruneByNumber(_ snapshots: [Entry], limit: Int, minAge: Duration, now: Date) -> [Int] {
        let ordered = snapshots.sorted { ($0.date, $0.id) < ($1.date, $1.id) }
        let excess = ordered.count - limit
        guard excess > 0 else { return [] }
        let minAge = Double(minAge.components.seconds)
        return ordered.prefix(excess).filter { now.timeIntervalSince($0.date) >= minAge }.map(\.id)
    }

    public static let utc: Calendar = {
        var c = Calendar(identifier: .iso8601)
        c.timeZone = TimeZone(identifier: "UTC")!
        return c
    }()
}
