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
        var found = NetworkInterface(name: name, index: index, mac: nil, isUp: false, addresses: [])
        var flags: UInt32 = 0
        let listed = InterfaceAddresses.forEach { e in
            guard e.name == name else { return }
            flags = e.flags
            if let a = e.ipv4 { found.addresses.append(a) }
            if let m = e.mac { found.mac = m }
        }
        guard listed else { return nil }
        found.isUp = flags & UInt32(IFF_UP) != 0 && flags & UInt32(IFF_RUNNING) != 0
        return found
    }
}
