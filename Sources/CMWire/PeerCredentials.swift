#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// Who is on the other end of a Unix-domain connection (SO_PEERCRED), and whether they may talk to us.
public struct PeerCredentials: Sendable, Equatable, CustomStringConvertible {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32

    public init(pid: Int32, uid: UInt32, gid: UInt32) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }

    public var description: String { "pid \(pid) uid \(uid) gid \(gid)" }

    /// Supplementary groups of the peer process, from /proc/PID/status ("Groups:" line).
    /// SO_PEERCRED carries only the primary gid; the process's own group list is the truth.
    func supplementaryGroups() -> [UInt32] {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return [] }
        for line in status.split(separator: "\n") where line.hasPrefix("Groups:") {
            return line.dropFirst("Groups:".count).split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap { UInt32($0) }
        }
        return []
    }
}

/// The rule for control sockets: root, the daemon's own user, or a member of the admin group.
public struct PeerPolicy: Sendable {
    public var groupName: String
    public var allowedGroup: UInt32?
    let ownUID: UInt32

    /// Looks the group up once; if it does not exist only root and the daemon's own user get in.
    public init(groupName: String = "clustermaker") {
        self.groupName = groupName
        self.allowedGroup = getgrnam(groupName).map { $0.pointee.gr_gid }
        self.ownUID = geteuid()
    }

    public func permits(_ peer: PeerCredentials) -> Bool {
        if peer.uid == 0 || peer.uid == ownUID { return true }
        guard let group = allowedGroup else { return false }
        return peer.gid == group || peer.supplementaryGroups().contains(group)
    }
}
