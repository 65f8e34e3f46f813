import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// The host's interfaces and their addresses as the kernel lists them now (getifaddrs(3)):
/// one walk of that list for cm-vipd's interface lookups and cm-pxed's boot network.
public enum InterfaceAddresses {
    /// One entry of the list: an interface with one address of one family.
    public struct Entry: Sendable {
        public var name: String
        /// IFF_* flags of the interface.
        public var flags: UInt32
        /// An IPv4 address and its netmask (AF_INET entries).
        public var ipv4: IPv4Address?
        public var netmask: IPv4Address?
        /// The link-layer address (AF_PACKET entries of Ethernet-like interfaces).
        public var mac: MACAddress?
    }

    /// Calls `body` for every entry; false when the list cannot be read.
    @discardableResult
    public static func forEach(_ body: (Entry) -> Void) -> Bool {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return false }
        defer { freeifaddrs(list) }
        var p = list
        while let entry = p {
            defer { p = entry.pointee.ifa_next }
            var e = Entry(name: String(cString: entry.pointee.ifa_name), flags: entry.pointee.ifa_flags)
            if let sa = entry.pointee.ifa_addr {
                switch Int32(sa.pointee.sa_family) {
                case AF_INET:
                    e.ipv4 = ipv4(sa)
                    e.netmask = entry.pointee.ifa_netmask.map(ipv4)
                case AF_PACKET:
                    sa.withMemoryRebound(to: sockaddr_ll.self, capacity: 1) { ll in
                        if ll.pointee.sll_halen == 6 {
                            e.mac = withUnsafeBytes(of: ll.pointee.sll_addr) { MACAddress(bytes: Array($0.prefix(6))) }
                        }
                    }
                default:
                    break
                }
            }
            body(e)
        }
        return true
    }

    /// The network of the interface address `address` (its address and netmask), or nil when
    /// no interface has it.
    public static func network(of address: IPv4Address) -> IPv4Network? {
        var found: IPv4Network?
        forEach { e in
            guard found == nil, e.ipv4 == address, let mask = e.netmask?.rawValue else { return }
            found = IPv4Network("\(IPv4Address(rawValue: address.rawValue & mask))/\(mask.nonzeroBitCount)")
        }
        return found
    }

    private static func ipv4(_ sa: UnsafeMutablePointer<sockaddr>) -> IPv4Address {
        sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { IPv4Address(rawValue: UInt32(bigEndian: $0.pointee.sin_addr.s_addr)) }
    }
}
