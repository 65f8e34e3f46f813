import CMTypes
import CLinux
import Glibc

/// What the VRRP shell needs to know about one interface, read from the kernel when asked.
public struct NetworkInterface: Sendable, Equatable {
    public var name: String
    public var index: Int32
    public var mac: MACAddress?
    /// IFF_UP and IFF_RUNNING: administratively up with carrier.
    public var isUp: Bool
    /// IPv4 addresses on it, in the kernel's order (the primary first).
    public var addresses: [IPv4Address]

    /// Reads the interface now; nil when there is none of that name.
    public static func lookup(_ name: String) -> NetworkInterface? {
        let index = Int32(bitPattern: if_nametoindex(name))
        guard index > 0 else { return nil }
        var mac: MACAddress?
        var flags: UInt32 = 0
        var addresses: [IPv4Address] = []
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return nil }
        defer { freeifaddrs(list) }
        var p = list
        while let entry = p {
            defer { p = entry.pointee.ifa_next }
            guard String(cString: entry.pointee.ifa_name) == name else { continue }
            flags = entry.pointee.ifa_flags
            guard let sa = entry.pointee.ifa_addr else { continue }
            switch Int32(sa.pointee.sa_family) {
            case AF_INET:
                sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                    addresses.append(IPv4Address(rawValue: UInt32(bigEndian: $0.pointee.sin_addr.s_addr)))
                }
            case AF_PACKET:
                sa.withMemoryRebound(to: sockaddr_ll.self, capacity: 1) { ll in
                    let n = Int(ll.pointee.sll_halen)
                    if n == 6 {
                        mac = withUnsafeBytes(of: ll.pointee.sll_addr) { MACAddress(bytes: Array($0.prefix(6))) }
                    }
                }
            default:
                break
            }
        }
        let up = flags & UInt32(IFF_UP) != 0 && flags & UInt32(IFF_RUNNING) != 0
        return NetworkInterface(name: name, index: index, mac: mac, isUp: up, addresses: addresses)
    }
}
