#if canImport(Glibc)
import Glibc
#endif

/// A TCP listening socket bound here, for a daemon that got none from systemd.
public enum ListeningSocket {
    /// Binds `endpoint` (the address need not exist yet: IP_FREEBIND) and listens.
    public static func bind(_ endpoint: IPv4Endpoint, backlog: Int32 = 4096) throws(SystemError) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, 4)
        setsockopt(fd, Int32(IPPROTO_IP), IP_FREEBIND, &one, 4)
        // Accepted sockets inherit it: no setsockopt per connection.
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, 4)
        var address = endpoint.sockaddrIn
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 || listen(fd, backlog) != 0 {
            let e = errno
            close(fd)
            throw SystemError("bind \(endpoint)", errno: e)
        }
        return fd
    }
}
