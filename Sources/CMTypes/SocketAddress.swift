#if canImport(Glibc)
import Glibc
#endif

extension IPv4Endpoint {
    /// The endpoint as the socket calls take it (AF_INET, network byte order): the one place
    /// a `sockaddr_in` is filled in.
    public var sockaddrIn: sockaddr_in {
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        sa.sin_addr.s_addr = address.rawValue.bigEndian
        return sa
    }

    /// The endpoint a socket call gave back.
    public init(_ sa: sockaddr_in) {
        self.init(address: IPv4Address(rawValue: UInt32(bigEndian: sa.sin_addr.s_addr)), port: UInt16(bigEndian: sa.sin_port))
    }
}
