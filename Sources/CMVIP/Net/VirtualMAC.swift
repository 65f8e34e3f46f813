import CMTypes
import Glibc
import Synchronization

/// The virtual router MAC address of RFC 5798 section 7.3 on a macvlan interface of its own,
/// as keepalived's `use_vmac` does: the master's adverts, ARP replies and gratuitous ARPs come
/// from 00-00-5E-00-01-{VRID}, so a takeover changes no neighbour's ARP entry, only the
/// switch port the address is learned on.
///
/// The interface exists on the backup too (the VRRP socket listens on it), without addresses.
/// The kernel settings keepalived uses make only that interface answer ARP for the virtual
/// addresses: on it arp_ignore=1, accept_local=1, rp_filter=0; on the parent arp_ignore=1 and
/// arp_filter=1, restored when the last virtual-MAC interface on the parent goes.
enum VirtualMAC {
    static func address(vrid: Int) -> MACAddress {
        MACAddress(bytes: [0x00, 0x00, 0x5e, 0x00, 0x01, UInt8(vrid)])!
    }

    /// Parent settings before the first virtual-MAC interface on them, per parent.
    private struct Saved { var users: Int; var arpIgnore: UInt32; var arpFilter: UInt32 }
    private static let saved = Mutex<[String: Saved]>([:])

    /// Creates the interface `name` on `parent` (replacing one a killed daemon left behind),
    /// sets it and the parent up for it, and brings it up.
    static func create(name: String, vrid: Int, parent: NetworkInterface, route: Netlink.RouteSocket) throws(SystemError) -> NetworkInterface {
        let mac = address(vrid: vrid)
        if let leftover = NetworkInterface.lookup(name) {
            guard leftover.mac == mac else {
                throw SystemError("interface \(name) exists and its MAC is \(leftover.mac?.description ?? "none"), not VRID \(vrid)'s \(mac); choose another vmac_interface", errno: EEXIST)
            }
            try Netlink.deleteLink(leftover, on: route)
        }
        try Netlink.addMacvlan(name: name, lower: parent, mac: mac, on: route)
        guard let created = NetworkInterface.lookup(name) else { throw SystemError("look up \(name) after creating it", errno: ENODEV) }
        do throws(SystemError) {
            // No IPv6 link-local address: the backup's copy of the MAC must send nothing.
            _ = Netlink.disableIPv6AddressGeneration(created, on: route)
            try Netlink.setIPv4Conf(created, [(.arpIgnore, 1), (.acceptLocal, 1), (.rpFilter, 0)], on: route)
            try configureParent(parent, route: route)
        } catch {
            try? Netlink.deleteLink(created, on: route)
            throw error
        }
        do throws(SystemError) {
            try Netlink.setUp(created, true, on: route)
        } catch {
            try? remove(name: name, parent: parent.name, route: route)
            throw error
        }
        return NetworkInterface.lookup(name) ?? created
    }

    /// Deletes the interface (and its addresses) and gives the parent its settings back.
    static func remove(name: String, parent: String, route: Netlink.RouteSocket) throws(SystemError) {
        if let existing = NetworkInterface.lookup(name) { try Netlink.deleteLink(existing, on: route) }
        let restore = saved.withLock { all -> Saved? in
            guard var s = all[parent] else { return nil }
            s.users -= 1
            if s.users > 0 {
                all[parent] = s
                return nil
            }
            all[parent] = nil
            return s
        }
        if let restore, let p = NetworkInterface.lookup(parent) {
            try Netlink.setIPv4Conf(p, [(.arpIgnore, restore.arpIgnore), (.arpFilter, restore.arpFilter)], on: route)
        }
    }

    /// The parent must not answer ARP for the virtual addresses itself (arp_ignore=1) nor for
    /// its own address on the virtual-MAC interface (arp_filter=1).
    private static func configureParent(_ parent: NetworkInterface, route: Netlink.RouteSocket) throws(SystemError) {
        let first = saved.withLock { all -> Bool in
            if all[parent.name] != nil {
                all[parent.name]!.users += 1
                return false
            }
            all[parent.name] = Saved(users: 1, arpIgnore: Netlink.IPv4Conf.arpIgnore.value(on: parent.name) ?? 0,
                                     arpFilter: Netlink.IPv4Conf.arpFilter.value(on: parent.name) ?? 0)
            return true
        }
        guard first else { return }
        do throws(SystemError) {
            try Netlink.setIPv4Conf(parent, [(.arpIgnore, 1), (.arpFilter, 1)], on: route)
        } catch {
            _ = saved.withLock { $0.removeValue(forKey: parent.name) }
            throw error
        }
    }
}
