import Glibc

/// A failed system call: what was being done, and errno's text. The one errno error of the
/// suite (sockets, netlink, epoll, files).
public struct SystemError: Error, CustomStringConvertible, Sendable {
    public var what: String
    public var errno: Int32

    public init(_ what: String, errno: Int32 = Glibc.errno) {
        self.what = what
        self.errno = errno
    }

    public var description: String { "\(what): \(String(cString: strerror(errno)))" }
}
