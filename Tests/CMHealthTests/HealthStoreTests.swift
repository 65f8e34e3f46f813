import CMHealth
import CMTypes
import CMWire
import Foundation
import Testing

func tempDatabase() -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("cm-store-\(UUID().uuidString.prefix(8))/healthd.sqlite").path
}

@Suite struct HealthStoreTests {
    let web1 = CheckID(check: "web", node: "node001")
    let web2 = CheckID(check: "web", node: "node002")

    @Test func transitionsSurviveReopening() throws {
        let path = tempDatabase()
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        do {
            let store = try HealthStore(path: path)
            try store.record(HealthTransition(id: web1, from: .unknown, to: .up, at: Date(timeIntervalSince1970: 100), message: "a"))
            try store.record(HealthTransition(id: web1, from: .up, to: .down, at: Date(timeIntervalSince1970: 200), message: "b"))
            try store.record(HealthTransition(id: web2, from: .unknown, to: .up, at: Date(timeIntervalSince1970: 150), message: "c"))
        }
        let store = try HealthStore(path: path)
        let all = try store.transitions(check: nil, sinceMs: nil, limit: 10)
        #expect(all.map(\.message) == ["c", "b", "a"], "newest recorded first")
        #expect(try store.transitions(check: web1, sinceMs: 150_000, limit: 10).map(\.message) == ["b"])
        #expect(try store.transitions(check: nil, sinceMs: nil, limit: 1).count == 1)
        let last = try store.lastStatesWithTime()
        #expect(last[web1]?.0 == .down && last[web1]?.1 == Date(timeIntervalSince1970: 200))
        #expect(last[web2]?.0 == .up)
        try store.pruneTransitions(olderThanMs: 160_000)
        #expect(try store.transitions(check: nil, sinceMs: nil, limit: 10).map(\.message) == ["b"])
    }

    @Test func historyComesInPagesWithNothingLostOrRepeated() throws {
        let path = tempDatabase()
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        let store = try HealthStore(path: path)
        for i in 0..<2500 {
            try store.record(HealthTransition(id: i % 2 == 0 ? web1 : web2, from: .up, to: .down, at: Date(timeIntervalSince1970: Double(i)),
                                              message: String(i)))
        }
        var seen: [String] = []
        var before: Int64?
        repeat {
            let page = try store.transitions(check: nil, sinceMs: nil, beforeID: before, limit: 1000)
            #expect(page.records.count <= 1000)
            seen += page.records.map(\.message)
            before = page.next
        } while before != nil
        #expect(seen == (0..<2500).reversed().map(String.init), "newest first, every one once")
        let web1Page = try store.transitions(check: web1, sinceMs: nil, beforeID: nil, limit: 1250)
        #expect(web1Page.records.count == 1250 && web1Page.next == nil, "exactly a page left: no next")
    }

    @Test func downsamplingIsExactAndRunsOnce() throws {
        let path = tempDatabase()
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        let store = try HealthStore(path: path)
        let hour: Int64 = 3_600_000
        let t0: Int64 = 1000 * hour  // on an hour boundary
        // Two hours of samples every 15 s: value = minute index (so each minute's avg is known).
        var batch: [(NodeName, Int64, [String: Double])] = []
        for i in 0..<(2 * 240) {
            let ts = t0 + Int64(i) * 15_000
            batch.append(("node001", ts, ["cpu_percent": Double(i / 4), "load1": 1]))
        }
        try store.insert(batch: batch)
        let now = t0 + 2 * hour + 10_000
        let long: Duration = .seconds(365 * 86_400)
        try store.maintain(nowMs: now, rawRetention: long, minuteRetention: long, hourRetention: long)
        try store.maintain(nowMs: now, rawRetention: long, minuteRetention: long, hourRetention: long)  // idempotent

        // Minute resolution: ask for a range older than the raw retention.
        let minutes = try store.query(node: "node001", series: ["cpu_percent"], sinceMs: t0, untilMs: t0 + 2 * hour - 1,
                                      rawRetention: .seconds(60), minuteRetention: long, nowMs: now)
        #expect(minutes.count == 1)
        #expect(minutes[0].resolution == "1m")
        #expect(minutes[0].points.count == 120)
        #expect(minutes[0].points[7].value == 7 && minutes[0].points[7].ms == t0 + 7 * 60_000)

        let hours = try store.query(node: "node001", series: nil, sinceMs: t0, untilMs: now, rawRetention: .seconds(60), minuteRetention: .seconds(120), nowMs: now)
        let cpu = try #require(hours.first { $0.name == "cpu_percent" })
        #expect(cpu.resolution == "1h")
        #expect(cpu.points.map(\.value) == [29.5, 89.5], "average of minute values 0…59 and 60…119")
        #expect(hours.map(\.name) == ["cpu_percent", "load1"])

        let raw = try store.query(node: "node001", series: ["load1"], sinceMs: now - 60_000, untilMs: now, rawRetention: long, minuteRetention: long, nowMs: now)
        #expect(raw.first?.resolution == "raw")
        #expect(raw.first?.points.count == 3, "samples at −45 s, −30 s, −15 s before the last hour ended")

        // Retention: raw samples older than 1 h go: those at t0 + 1 h + 15 s (i = 241) … i = 479 stay.
        try store.maintain(nowMs: now, rawRetention: .seconds(3600), minuteRetention: long, hourRetention: long)
        let rawAll = try store.query(node: "node001", series: ["load1"], sinceMs: t0, untilMs: now, rawRetention: long, minuteRetention: long, nowMs: now)
        #expect(rawAll.first?.points.count == 479 - 241 + 1)
        #expect(rawAll.first?.points.first?.ms == t0 + 241 * 15_000)
    }
}
