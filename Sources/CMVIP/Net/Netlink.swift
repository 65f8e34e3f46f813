import CMTypes
import CLinux
import Foundation
import Glibc

/// rtnetlink (NETLINK_ROUTE) without shelling out to ip(8): add and remove IPv4 addresses
/// (needs CAP_NET_ADMIN), and a socket that wakes the runner on link changes.
enum Netlink {
    // linux/rtnetlink.h and linux/if_addr.h; not all are imported into Swift.
    static let RTM_NEWADDR: UInt16 = 20
    static let RTM_DELADDR: UInt16 = 21
    static let IFA_ADDRESS: UInt16 = 1
    static let IFA_LOCAL: UInt16 = 2
    static let IFA_LABEL: UInt16 = 3
    static let IFA_BROADCAST: UInt16 = 4
    static let NLM_F_REQUEST: UInt16 = 0x1
    static let NLM_F_ACK: UInt16 = 0x4
    static let NLM_F_REPLACE: UInt16 = 0x100
    static let NLM_F_CREATE: UInt16 = 0x400
    static let NLMSG_ERROR: UInt16 = 2
    static let RTMGRP_LINK: UInt32 = 1
    static let RTM_NEWLINK: UInt16 = 16
    static let RTM_DELLINK: UInt16 = 17
    static let NLM_F_EXCL: UInt16 = 0x200
    // linux/if_link.h
    static let IFLA_ADDRESS: UInt16 = 1
    static let IFLA_IFNAME: UInt16 = 3
    static let IFLA_LINK: UInt16 = 5
    static let IFLA_LINKINFO: UInt16 = 18
    static let IFLA_AF_SPEC: UInt16 = 26
    static let IFLA_INFO_KIND: UInt16 = 1
    static let IFLA_INFO_DATA: UInt16 = 2
    static let IFLA_MACVLAN_MODE: UInt16 = 1
    static let MACVLAN_MODE_PRIVATE: UInt32 = 1
    static let IFLA_INET_CONF: UInt16 = 1
    static let IFLA_INET6_ADDR_GEN_MODE: UInt16 = 8
    static let IN6_ADDR_GEN_MODE_NONE: UInt8 = 1
    static let RTMGRP_IPV4_IFADDR: UInt32 = 0x10

    /// Adds `address` to the interface; already there is fine.
    static func addAddress(_ address: IPv4InterfaceAddress, interface: NetworkInterface, label: String? = nil, on socket: RouteSocket) throws(SystemError) {
        let err = socket.request(type: RTM_NEWADDR, flags: NLM_F_CREATE | NLM_F_REPLACE, body: addressBody(address, interface: interface, label: label))
        if err != 0, err != EEXIST { throw SystemError("add \(address) to \(interface.name)", errno: err) }
    }

    /// Removes `address` from the interface; already gone is fine.
    static func removeAddress(_ address: IPv4InterfaceAddress, interface: NetworkInterface, on socket: RouteSocket) throws(SystemError) {
        let err = socket.request(type: RTM_DELADDR, flags: 0, body: addressBody(address, interface: interface, label: nil))
        if err != 0, err != EADDRNOTAVAIL, err != ENODEV { throw SystemError("remove \(address) from \(interface.name)", errno: err) }
    }

    /// Creates a macvlan interface `name` on `lower` with `mac`, in private mode (it does not
    /// talk to other macvlans on the same lower device), administratively down.
    static func addMacvlan(name: String, lower: NetworkInterface, mac: MACAddress, on socket: RouteSocket) throws(SystemError) {
        var body = linkHeader(index: 0)
        body += attribute(IFLA_IFNAME, Array(name.utf8) + [0])
        body += attribute(IFLA_ADDRESS, mac.bytes)
        body += attribute(IFLA_LINK, le32(UInt32(bitPattern: lower.index)))
        let data = attribute(IFLA_MACVLAN_MODE, le32(MACVLAN_MODE_PRIVATE))
        body += attribute(IFLA_LINKINFO, attribute(IFLA_INFO_KIND, Array("macvlan".utf8)) + attribute(IFLA_INFO_DATA, data))
        let err = socket.request(type: RTM_NEWLINK, flags: NLM_F_CREATE | NLM_F_EXCL, body: body)
        if err != 0 { throw SystemError("create macvlan \(name) on \(lower.name)", errno: err) }
    }

    /// Deletes an interface; already gone is fine.
    static func deleteLink(_ interface: NetworkInterface, on socket: RouteSocket) throws(SystemError) {
        let err = socket.request(type: RTM_DELLINK, flags: 0, body: linkHeader(index: interface.index))
        if err != 0, err != ENODEV { throw SystemError("delete interface \(interface.name)", errno: err) }
    }

    /// Sets the interface administratively up or down.
    static func setUp(_ interface: NetworkInterface, _ up: Bool, on socket: RouteSocket) throws(SystemError) {
        let body = linkHeader(index: interface.index, flags: up ? UInt32(IFF_UP) : 0, change: UInt32(IFF_UP))
        let err = socket.request(type: RTM_NEWLINK, flags: 0, body: body)
        if err != 0 { throw SystemError("set \(interface.name) \(up ? "up" : "down")", errno: err) }
    }

    /// Sets IPv4 per-interface settings (net.ipv4.conf.IF.*, IPV4_DEVCONF_* indexes) over
    /// rtnetlink, which needs CAP_NET_ADMIN but not a writable /proc/sys.
    static func setIPv4Conf(_ interface: NetworkInterface, _ values: [(IPv4Conf, UInt32)], on socket: RouteSocket) throws(SystemError) {
        let conf = values.flatMap { attribute(UInt16($0.0.rawValue), le32($0.1)) }
        let body = linkHeader(index: interface.index) + attribute(IFLA_AF_SPEC, attribute(UInt16(AF_INET), attribute(IFLA_INET_CONF, conf)))
        let err = socket.request(type: RTM_NEWLINK, flags: 0, body: body)
        if err != 0 { throw SystemError("set \(values.map { "\($0.0)=\($0.1)" }.joined(separator: " ")) on \(interface.name)", errno: err) }
    }

    /// Turns off IPv6 link-local address generation, so that the interface sends nothing of
    /// its own (a backup's virtual-MAC interface must stay silent). Returns the errno, if any:
    /// a kernel without IPv6 has nothing to turn off.
    static func disableIPv6AddressGeneration(_ interface: NetworkInterface, on socket: RouteSocket) -> Int32 {
        let inet6 = attribute(IFLA_INET6_ADDR_GEN_MODE, [IN6_ADDR_GEN_MODE_NONE])
        let body = linkHeader(index: interface.index) + attribute(IFLA_AF_SPEC, attribute(UInt16(AF_INET6), inet6))
        return socket.request(type: RTM_NEWLINK, flags: 0, body: body)
    }

    /// IPV4_DEVCONF_* (linux/ip.h): the attribute numbers inside IFLA_INET_CONF.
    enum IPv4Conf: Int, CustomStringConvertible {
        case rpFilter = 8, arpFilter = 13, arpIgnore = 19, acceptLocal = 23

        /// The name under /proc/sys/net/ipv4/conf/IF/.
        var description: String {
            switch self {
            case .rpFilter: "rp_filter"
            case .arpFilter: "arp_filter"
            case .arpIgnore: "arp_ignore"
            case .acceptLocal: "accept_local"
            }
        }

        /// The current value, read from /proc/sys (readable even where it is mounted read-only).
        func value(on interface: String) -> UInt32? {
            guard let text = try? String(contentsOfFile: "/proc/sys/net/ipv4/conf/\(interface)/\(description)", encoding: .utf8) else { return nil }
            return UInt32(text.trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }

    /// struct ifinfomsg { family, pad, type, index, flags, change }.
    private static func linkHeader(index: Int32, flags: UInt32 = 0, change: UInt32 = 0) -> [UInt8] {
        [UInt8(AF_UNSPEC), 0] + le16(0) + le32(UInt32(bitPattern: index)) + le32(flags) + le32(change)
    }

    /// struct ifaddrmsg and its attributes for one IPv4 address.
    private static func addressBody(_ address: IPv4InterfaceAddress, interface: NetworkInterface, label: String?) -> [UInt8] {
        var body: [UInt8] = []
        // struct ifaddrmsg { family, prefixlen, flags, scope, index }
        body += [UInt8(AF_INET), UInt8(address.prefixLength), 0, 0]
        body += le32(UInt32(bitPattern: interface.index))
        let o = address.address.octets
        let raw: [UInt8] = [o.0, o.1, o.2, o.3]
        body += attribute(IFA_LOCAL, raw)
        body += attribute(IFA_ADDRESS, raw)
        if address.prefixLength < 31 {
            let broadcast = address.address.rawValue | ~(address.prefixLength == 0 ? 0 : UInt32.max << UInt32(32 - address.prefixLength))
            body += attribute(IFA_BROADCAST, [UInt8(broadcast >> 24), UInt8(broadcast >> 16 & 0xff), UInt8(broadcast >> 8 & 0xff), UInt8(broadcast & 0xff)])
        }
        if let label { body += attribute(IFA_LABEL, Array(label.utf8.prefix(15)) + [0]) }
        return body
    }

    /// One rtnetlink request socket, opened once: opening and closing sockets on the VRRP thread
    /// would cost it the kernel's RCU grace periods at the worst moment (becoming master).
    final class RouteSocket {
        let fd: Int32
        private var sequence: UInt32 = 0

        init() throws(SystemError) {
            fd = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), NETLINK_ROUTE)
            guard fd >= 0 else { throw SystemError("socket(AF_NETLINK)") }
            var timeout = timeval(tv_sec: 2, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }

        deinit { close(fd) }

        /// Sends one request and waits for its ack; returns 0 or a positive errno.
        func request(type: UInt16, flags: UInt16, body: [UInt8]) -> Int32 {
            sequence &+= 1
            var message: [UInt8] = []
            message += le32(UInt32(16 + body.count))
            message += le16(type)
            message += le16(NLM_F_REQUEST | NLM_F_ACK | flags)
            message += le32(sequence)
            message += le32(0)  // port: the kernel
            message += body
            var kernel = sockaddr_nl()
            kernel.nl_family = sa_family_t(AF_NETLINK)
            let sent = message.withUnsafeBytes { bytes in
                withUnsafePointer(to: &kernel) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        sendto(fd, bytes.baseAddress, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_nl>.size))
                    }
                }
            }
            guard sent == message.count else { return errno }
            var reply = [UInt8](repeating: 0, count: 8192)
            while true {
                let n = reply.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                guard n >= 20 else { return n < 0 ? errno : EPROTO }
                // nlmsghdr (16 bytes) then, for NLMSG_ERROR, an int32 error (0 = ack, else -errno).
                let replyType = UInt16(reply[4]) | UInt16(reply[5]) << 8
                let replySequence = UInt32(reply[8]) | UInt32(reply[9]) << 8 | UInt32(reply[10]) << 16 | UInt32(reply[11]) << 24
                // An ack of an earlier request that timed out: not ours, read on.
                guard replySequence == sequence else { continue }
                guard replyType == NLMSG_ERROR else { return EPROTO }
                let code = Int32(bitPattern: UInt32(reply[16]) | UInt32(reply[17]) << 8 | UInt32(reply[18]) << 16 | UInt32(reply[19]) << 24)
                return -code
            }
        }
    }

    static func attribute(_ type: UInt16, _ payload: [UInt8]) -> [UInt8] {
        var out = le16(UInt16(4 + payload.count)) + le16(type) + payload
        while out.count % 4 != 0 { out.append(0) }
        return out
    }

    static func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xff), UInt8(v >> 8)] }
    static func le32(_ v: UInt32) -> [UInt8] { [UInt8(v & 0xff), UInt8(v >> 8 & 0xff), UInt8(v >> 16 & 0xff), UInt8(v >> 24)] }

    /// A non-blocking socket subscribed to link and IPv4 address changes: readable whenever
    /// an interface goes up or down, so the runner re-reads the interfaces it cares about.
    static func linkMonitor() throws(SystemError) -> FileDescriptor {
        let fd = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), NETLINK_ROUTE)
        guard fd >= 0 else { throw SystemError("socket(AF_NETLINK)") }
        var local = sockaddr_nl()
        local.nl_family = sa_family_t(AF_NETLINK)
        local.nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR
        let bound = withUnsafePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_nl>.size)) }
        }
        if bound != 0 {
            let e = errno
            close(fd)
            throw SystemError("bind netlink link monitor", errno: e)
        }
        return FileDescriptor(fd)
    }

    /// Reads and discards what is waiting on a monitor socket (the news is "something changed").
    static func drain(_ fd: Int32) {
        var buffer = [UInt8](repeating: 0, count: 16384)
        while buffer.withUnsafeMutableBytes({ recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }) > 0 {}
    }
}

/// Gratuitous ARP from an AF_PACKET socket (needs CAP_NET_RAW): an ARP request for the
/// virtual address from itself, broadcast, so that neighbours move it to our MAC at once.
/// The socket is opened once per instance and receives nothing (protocol 0): closing a packet
/// socket waits for an RCU grace period, which must not happen on the VRRP thread per burst.
final class GratuitousARP {
    static let ETH_P_ARP: UInt16 = 0x0806
    let fd: Int32

    init() throws(SystemError) {
        fd = socket(AF_PACKET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket(AF_PACKET)") }
    }

    deinit { close(fd) }

    func send(_ addresses: [IPv4Address], interface: NetworkInterface, mac: MACAddress) throws(SystemError) {
        var to = sockaddr_ll()
        to.sll_family = UInt16(AF_PACKET)
        to.sll_protocol = Self.ETH_P_ARP.bigEndian
        to.sll_ifindex = interface.index
        to.sll_halen = 6
        withUnsafeMutableBytes(of: &to.sll_addr) { for i in 0..<6 { $0[i] = 0xff } }
        for address in addresses {
            let frame = Self.frame(for: address, mac: mac)
            let sent = frame.withUnsafeBytes { bytes in
                withUnsafePointer(to: &to) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        sendto(fd, bytes.baseAddress, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_ll>.size))
                    }
                }
            }
            if sent < 0 { throw SystemError("gratuitous ARP for \(address) on \(interface.name)") }
        }
    }

    /// Ethernet + ARP (RFC 826) request with sender and target protocol address both `address`.
    static func frame(for address: IPv4Address, mac: MACAddress) -> [UInt8] {
        let o = address.octets
        let ip: [UInt8] = [o.0, o.1, o.2, o.3]
        var f: [UInt8] = Array(repeating: 0xff, count: 6) + mac.bytes + [0x08, 0x06]
        f += [0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]  // Ethernet, IPv4, request
        f += mac.bytes + ip
        f += Array(repeating: 0, count: 6) + ip
        return f
    }
}
