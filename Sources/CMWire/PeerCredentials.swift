#if canImport(Glibc)
import Glibc
#endif

/// Who is on the other end of a Unix-domain connection, and whether they may talk to us.
/// Everything here comes from the socket (SO_PEERCRED, SO_PEERGROUPS), as the kernel recorded
/// it at connect(2): under the units /proc is hidepid=invisible, so the peer's
/// /proc/PID/status is out of sight for a daemon running as user clustermaker.
public struct PeerCredentials: Sendable, Equatable, CustomStringConvertible {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32
    /// Supplementary groups (SO_PEERGROUPS), without gid 0: see `supplementaryGroups(from:)`.
    public var groups: [UInt32]

    public init(pid: Int32, uid: UInt32, gid: UInt32, groups: [UInt32] = []) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
        self.groups = groups
    }

    public var description: String { "pid \(pid) uid \(uid) gid \(gid)" }

    /// The supplementary groups in a buffer that SO_PEERGROUPS filled. The kernel writes as many
    /// gids as the peer has and says how many only in optlen, which NIO's getsockopt does not
    /// hand back; the rest of the buffer stays zero. A 0 is therefore padding or root's group,
    /// and is dropped: the admin group is never gid 0, and root gets in by uid anyway.
    static func supplementaryGroups(from buffer: some Collection<UInt32>) -> [UInt32] {
        buffer.filter { $0 != 0 }
    }
}

/// The rule for control sockets: root, the daemon's own user, or a member of the admin group.
public struct PeerPolicy: Sendable {
    public var groupName: String
    public var allowedGroup: UInt32?
    let ownUID: UInt32

    /// Looks the group up once; if it does not exist only root and the daemon's own user get in.
    public init(groupName: String = "clustermaker") {
        self.init(groupName: groupName, allowedGroup: getgrnam(groupName).map { $0.pointee.gr_gid }, ownUID: geteuid())
    }

    /// A policy with the group and our own uid given, not looked up (tests).
    public init(groupName: String, allowedGroup: UInt32?, ownUID: UInt32) {
        self.groupName = groupName
        self.allowedGroup = allowedGroup
        self.ownUID = ownUID
    }

    public func permits(_ peer: PeerCredentials) -> Bool {
        if peer.uid == 0 || peer.uid == ownUID { return true }
        guard let group = allowedGroup else { return false }
        return peer.gid == group || peer.groups.contains(group)
    }
}
