@testable import CMLB
import CMConfig
import CMTypes
import Testing

func servers(_ weights: [Int], backup: Set<Int> = []) -> [ServerConfig] {
    weights.enumerated().map { i, w in
        ServerConfig(address: IPv4Endpoint("10.0.0.\(i + 1):80")!, node: "node\(i + 1)", weight: w, backup: backup.contains(i))
    }
}

@Suite struct ServerSelectorTests {
    let now = ContinuousClock.now

    @Test func roundRobinTakesTurns() {
        var s = ServerSelector(servers: servers([1, 1, 1]), algorithm: .roundrobin)
        let picks = (0..<6).compactMap { _ in s.pick(key: 0, now: now) }
        #expect(picks == [0, 1, 2, 0, 1, 2])
    }

    @Test func smoothWeightedRoundRobinInterleaves() {
        // nginx's example: weights 5, 1, 1 → a a b a c a a.
        var s = ServerSelector(servers: servers([5, 1, 1]), algorithm: .roundrobin)
        let picks = (0..<7).compactMap { _ in s.pick(key: 0, now: now) }
        #expect(picks == [0, 0, 1, 0, 2, 0, 0])
    }

    @Test func weightZeroTakesNothing() {
        var s = ServerSelector(servers: servers([1, 0]), algorithm: .roundrobin)
        #expect((0..<4).compactMap { _ in s.pick(key: 0, now: now) } == [0, 0, 0, 0])
    }

    @Test func leastConnectionsPerWeight() {
        var s = ServerSelector(servers: servers([1, 2]), algorithm: .leastconn)
        s.opened(0)
        s.opened(1)
        // 1/1 against 1/2: the heavier server has room.
        #expect(s.pick(key: 0, now: now) == 1)
        s.opened(1)
        // 1/1 against 2/2: a tie, taken in turn.
        let a = s.pick(key: 0, now: now), b = s.pick(key: 0, now: now)
        #expect(Set([a, b]) == [0, 1])
        s.opened(1)
        #expect(s.pick(key: 0, now: now) == 0)
    }

    @Test func backupsOnlyWhenNoRegularServerIsUsable() {
        var s = ServerSelector(servers: servers([1, 1, 1], backup: [2]), algorithm: .roundrobin)
        #expect(Set((0..<4).compactMap { _ in s.pick(key: 0, now: now) }) == [0, 1])
        s.setHealthDown(0, true)
        s.setDrained(1, true)
        #expect(s.pick(key: 0, now: now) == 2)
        s.setDrained(1, false)
        #expect(s.pick(key: 0, now: now) == 1)
    }

    @Test func failedServerReturnsAfterItsBackoff() {
        var s = ServerSelector(servers: servers([1, 1]), algorithm: .roundrobin)
        s.failed(0, now: now, backoff: .seconds(5))
        #expect((0..<3).compactMap { _ in s.pick(key: 0, now: now + .seconds(1)) } == [1, 1, 1])
        #expect(s.pick(key: 0, now: now + .seconds(6), excluding: [1]) == 0)
        s.succeeded(0)
        #expect(s.isUsable(0, now: now))
    }

    @Test func maxConnectionsIsACap() {
        var s = ServerSelector(servers: [ServerConfig(address: IPv4Endpoint("10.0.0.1:80")!, maxConnections: 2)], algorithm: .roundrobin)
        s.opened(0)
        s.opened(0)
        #expect(s.pick(key: 0, now: now) == nil)
        s.closed(0)
        #expect(s.pick(key: 0, now: now) == 0)
    }

    @Test func excludedServersAreSkippedForARetry() {
        var s = ServerSelector(servers: servers([1, 1, 1]), algorithm: .source)
        let first = s.pick(key: 42, now: now)!
        let second = s.pick(key: 42, now: now, excluding: [first])!
        #expect(second != first)
        #expect(s.pick(key: 42, now: now, excluding: [0, 1, 2]) == nil)
    }

    @Test func sourceHashIsStableAndOnlyTheLeaversKeysMove() {
        var s = ServerSelector(servers: servers([1, 1, 1, 1]), algorithm: .source)
        let keys = (0..<2000).map { UInt64(0x0a00_0000 + $0) }
        let before = keys.map { s.pick(key: $0, now: now)! }
        #expect(keys.map { s.pick(key: $0, now: now)! } == before)
        // Every server gets a fair share (25% each; allow 15–35%).
        for i in 0..<4 {
            let share = Double(before.filter { $0 == i }.count) / Double(keys.count)
            #expect(share > 0.15 && share < 0.35, "server \(i) got \(share)")
        }
        s.setHealthDown(2, true)
        let after = keys.map { s.pick(key: $0, now: now)! }
        for (b, a) in zip(before, after) {
            if b == 2 { #expect(a != 2) } else { #expect(a == b) }
        }
        s.setHealthDown(2, false)
        #expect(keys.map { s.pick(key: $0, now: now)! } == before)
    }

    @Test func reloadKeepsWhatIsKnownAboutServersThatStay() {
        var old = ServerSelector(servers: servers([1, 1]), algorithm: .roundrobin)
        old.setDrained(1, true)
        old.opened(1)
        let new = ServerSelector(servers: servers([1, 1, 1]), algorithm: .leastconn, carryingOver: old)
        #expect(new.servers[1].drained && new.servers[1].active == 1)
        #expect(!new.servers[2].drained && new.servers[2].active == 0)
    }
}
