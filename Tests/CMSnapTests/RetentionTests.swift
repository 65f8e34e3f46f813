@testable import CMSnap
import CMTypes
import Foundation
import Testing

/// Timeline pruning by a fake clock, against what snapper's timeline cleanup keeps.
@Suite struct RetentionTests {
    let start = Date(timeIntervalSince1970: 1_798_761_600)  // 2027-01-01T00:00:00Z, a Friday

    /// One snapshot every `every` seconds for `count` snapshots from `start`.
    func timeline(every: Int, count: Int) -> [Retention.Entry] {
        (0..<count).map { Retention.Entry(id: $0 + 1, date: start.addingTimeInterval(Double($0 * every))) }
    }

    @Test func hourlyKeepsTheFirstOfEachOfTheNewestHours() {
        // Every 15 minutes for 6 hours: 24 snapshots, 4 an hour.
        let s = timeline(every: 900, count: 24)
        let now = start.addingTimeInterval(6 * 3600)
        let removed = Retention.prune(s, policy: RetentionPolicy(hourly: 3, daily: 0, weekly: 0, monthly: 0, yearly: 0, minAge: .zero), now: now)
        // Hours 3, 4, 5 (ids 13, 17, 21) are kept: the first of each of the newest three.
        #expect(Set(s.map(\.id)).subtracting(removed) == [13, 17, 21])
    }

    @Test func periodsOverlapAndMinAgeKeepsABurst() {
        // Every hour for 3 days.
        let s = timeline(every: 3600, count: 72)
        let now = start.addingTimeInterval(71 * 3600 + 600)   // ten minutes after the last
        let kept = Set(s.map(\.id)).subtracting(Retention.prune(s, policy: RetentionPolicy(hourly: 2, daily: 2, weekly: 0, monthly: 1, yearly: 0, minAge: .seconds(1800)), now: now))
        // hourly: the last two hours (71, 72); daily: the first of days 2 and 3 (25, 49);
        // monthly: the first of January (1); min age: the last one (72), already kept.
        #expect(kept == [1, 25, 49, 71, 72])
    }

    @Test func weeksAreISOWeeks() {
        // Daily for 15 days from Friday 2027-01-01: ISO weeks start on Monday (Jan 4 and 11).
        let s = timeline(every: 86400, count: 15)
        let kept = Set(s.map(\.id)).subtracting(Retention.prune(s, policy: RetentionPolicy(hourly: 0, daily: 0, weekly: 3, monthly: 0, yearly: 0, minAge: .zero),
                                                                now: start.addingTimeInterval(16 * 86400)))
        #expect(kept == [1, 4, 11])
    }

    @Test func nothingToKeepRemovesAllButTheYoung() {
        let s = timeline(every: 60, count: 10)
        let now = start.addingTimeInterval(600)
        let removed = Retention.prune(s, policy: RetentionPolicy(hourly: 0, daily: 0, weekly: 0, monthly: 0, yearly: 0, minAge: .seconds(180)), now: now)
        #expect(removed == [1, 2, 3, 4, 5, 6, 7, 8], "the one made exactly 180 s ago is not younger than 180 s")
        #expect(Retention.prune([], policy: RetentionPolicy(), now: now).isEmpty)
    }

    @Test func theOrderGivenDoesNotMatter() {
        let s = timeline(every: 900, count: 24)
        let policy = RetentionPolicy(hourly: 3, daily: 1, weekly: 0, monthly: 0, yearly: 0, minAge: .zero)
        let now = start.addingTimeInterval(6 * 3600)
        #expect(Retention.prune(s.reversed(), policy: policy, now: now) == Retention.prune(s, policy: policy, now: now))
    }
}

@Suite struct FilesystemTests {
    @Test func magicNumbers() {
        #expect(FilesystemKind(magic: 0x9123_683E) == .btrfs && FilesystemKind(magic: 0x5846_5342) == .xfs && FilesystemKind(magic: 0xEF53) == .ext4)
        #expect(FilesystemKind(magic: 0x1234).name == "0x1234")
    }

    /// On this machine's /tmp (whatever it is): a backend is chosen and says why; a path that
    /// does not exist is an error naming it.
    @Test func choosingSaysWhy() throws {
        let dir = NSTemporaryDirectory() + "cm-snap-fs-\(UInt32.random(in: 0 ... .max))"
        try FileManager.default.createDirectory(atPath: dir + "/src", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir + "/store", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (backend, why) = try SnapshotBackend.choose(source: dir + "/src", store: dir + "/store")
        #expect(!why.isEmpty)
        if try FilesystemKind.of(dir) == .ext4 { #expect(backend == .hardlink, "ext4 has no reflink") }
        #expect(try (FileManager.default.contentsOfDirectory(atPath: dir + "/src")).isEmpty, "the reflink probe is removed")
        #expect(throws: SnapshotError.self) { try SnapshotBackend.choose(source: dir + "/missing", store: dir + "/store") }
    }
}

@Suite struct ComplaintTests {
    /// rsync on a full disk complains once per file: the error that reaches a reply is short.
    @Test func aLongComplaintIsCutToItsFirstAndLastLines() {
        let text = (1...5000).map { "rsync: mkstemp \"/x/f\($0)\" failed: No space left on device (28)" }.joined(separator: "\n")
        let brief = SnapshotStore.brief(text)
        #expect(brief.split(separator: "\n").count == 5 && brief.contains("4996 more lines") && brief.hasSuffix("f5000\" failed: No space left on device (28)"))
        #expect(SnapshotStore.brief("one line") == "one line")
        #expect(SnapshotStore.brief(String(repeating: "x", count: 10_000)).count == 301)
    }
}

@Suite struct NumberCleanupTests {
    /// snapper's number cleanup: the newest `limit` kept, and any younger than the minimum age.
    @Test func theOldestPastTheLimitGo() {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let entries = (1...8).map { Retention.Entry(id: $0, date: now.addingTimeInterval(Double($0 - 9) * 3600)) }
        #expect(Retention.pruneByNumber(entries, limit: 5, minAge: .seconds(1800), now: now) == [1, 2, 3])
        #expect(Retention.pruneByNumber(entries, limit: 8, minAge: .zero, now: now).isEmpty)
        #expect(Retention.pruneByNumber(entries.shuffled(), limit: 2, minAge: .seconds(3 * 3600 + 1), now: now) == [1, 2, 3, 4, 5], "the young ones stay")
    }
}
