import CPAM
import Foundation

/// Logins with the system's accounts through PAM (service `cm-webd`, /etc/pam.d/cm-webd),
/// for members of one group (default `clustermaker`, the group that may use cmctl). pam_unix
/// reads /etc/shadow itself, so the daemon needs group shadow (cm-webd.service has it).
public struct SystemLogin: Sendable, Equatable {
    public var service: String
    public var group: String

    public init(service: String, group: String) {
        self.service = service
        self.group = group
    }

    public enum Outcome: Sendable, Equatable {
        case accepted
        /// Wrong password, unknown user, locked or expired account: PAM's words, for the log.
        case refused(String)
        /// The password is right but the user is not in the group.
        case notInGroup
    }

    /// Blocks for as long as PAM takes (pam_unix waits about 2 s after a wrong password):
    /// call it off the event loops.
    public func check(user: String, password: String) -> Outcome {
        guard UsersFile.isUserName(user), !password.isEmpty, password.utf8.count <= 512, !password.contains("\0") else {
            return .refused("not a user name or password")
        }
        let rc = cm_pam_check(service, user, password)
        guard rc == PAM_SUCCESS else { return .refused(String(cString: cm_pam_error(rc))) }
        return Self.isMember(user: user, of: group) ? .accepted : .notInGroup
    }

    /// Whether `user`'s groups (primary and supplementary) include `group`.
    public static func isMember(user: String, of group: String) -> Bool {
        guard let pw = getpwnam(user), let gr = getgrnam(group) else { return false }
        let wanted = gr.pointee.gr_gid, primary = pw.pointee.pw_gid
        if primary == wanted { return true }
        var count: Int32 = 64
        var groups = [gid_t](repeating: 0, count: Int(count))
        if getgrouplist(user, primary, &groups, &count) < 0 {
            groups = [gid_t](repeating: 0, count: Int(count))
            guard getgrouplist(user, primary, &groups, &count) >= 0 else { return false }
        }
        return groups.prefix(Int(count)).contains(wanted)
    }
}
