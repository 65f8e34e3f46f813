import CMTypes
#if canImport(Glibc)
import Glibc
#endif

/// The host's IPv4 interface addresses as the kernel has them now.
enum InterfaceAddresses {
    /// The network of the interface address `address` (its address and netmask), or nil when
    /// no interface has it.
    static func network(of address: IPv4Address) -> IPv4Network? {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return nil }
        defer { freeifaddrs(list) }
        var p = list
        while let entry = p {
            defer { p = entry.pointee.ifa_next }
            guard let sa = entry.pointee.ifa_addr, Int32(sa.pointee.sa_family) == AF_INET, let nm = entry.pointee.ifa_netmask else { continue }
            let a = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt32(bigEndian: $0.pointee.sin_addr.s_addr) }
            guard a == address.rawValue else { continue }
            let mask = nm.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt32(bigEndian: $0.pointee.sin_addr.s_addr) }
            return IPv4Network("\(IPv4Address(rawValue: a & mask))/\(mask.nonzeroBitCount)")
        }
        return nil
    }
}
