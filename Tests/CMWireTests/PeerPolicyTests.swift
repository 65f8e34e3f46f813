@testable import CMWire
import Testing

@Suite struct PeerPolicyTests {
    /// Group clustermaker is 990 here, the daemon runs as uid 991 (user clustermaker).
    let policy = PeerPolicy(groupName: "clustermaker", allowedGroup: 990, ownUID: 991)

    @Test(arguments: [
        ("root", PeerCredentials(pid: 1, uid: 0, gid: 0), true),
        ("the daemon's own user", PeerCredentials(pid: 1, uid: 991, gid: 990), true),
        ("primary group clustermaker", PeerCredentials(pid: 1, uid: 1000, gid: 990), true),
        ("supplementary group clustermaker", PeerCredentials(pid: 1, uid: 65534, gid: 65534, groups: [27, 990]), true),
        ("nobody without the group", PeerCredentials(pid: 1, uid: 65534, gid: 65534), false),
        ("other supplementary groups", PeerCredentials(pid: 1, uid: 1000, gid: 1000, groups: [27, 100, 989, 991]), false),
    ])
    func permits(name: String, peer: PeerCredentials, expected: Bool) {
        #expect(policy.permits(peer) == expected, "\(name)")
    }

    @Test func withoutTheGroupOnlyRootAndOwnUser() {
        let policy = PeerPolicy(groupName: "clustermaker", allowedGroup: nil, ownUID: 991)
        #expect(policy.permits(PeerCredentials(pid: 1, uid: 0, gid: 0)))
        #expect(policy.permits(PeerCredentials(pid: 1, uid: 991, gid: 991)))
        #expect(!policy.permits(PeerCredentials(pid: 1, uid: 1000, gid: 990, groups: [990])))
    }

    /// SO_PEERGROUPS fills the front of a zeroed buffer; the zeros behind are not groups.
    @Test func supplementaryGroupsFromAZeroPaddedBuffer() {
        #expect(PeerCredentials.supplementaryGroups(from: [27, 990, 1000, 0, 0, 0]) == [27, 990, 1000])
        #expect(PeerCredentials.supplementaryGroups(from: [0, 0, 0, 0]) == [])
        #expect(PeerCredentials.supplementaryGroups(from: [0, 4, 990, 0]) == [4, 990])
    }
}
