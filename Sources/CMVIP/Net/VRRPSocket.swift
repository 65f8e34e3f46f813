import CMTypes
import CLinux
import Glibc
import VRRP

/// A raw IPv4 socket for protocol 112 on one interface (needs CAP_NET_RAW). Receives every
/// VRRP datagram on the interface with its IP header; sends adverts with TTL 255 to the
/// multicast group or to unicast peers. Non-blocking: the runner polls `fd`.
final class VRRPSocket {
    let fd: Int32
    let interface: NetworkInterface

    init(interface: NetworkInterface, multicast: Bool) throws(SystemError) {
        let fd = socket(AF_INET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Int32(VRRP.ipProtocol))
        guard fd >= 0 else { throw SystemError("socket(AF_INET, SOCK_RAW, 112)") }
        self.fd = fd
        self.interface = interface
        do throws(SystemError) {
            // Only this interface's traffic: several instances on several interfaces each get their own.
            let bound = interface.name.withCString { name in
                setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, name, socklen_t(strlen(name) + 1))
            }
            if bound != 0 { throw SystemError("SO_BINDTODEVICE \(interface.name)") }
            // Section 5.1.1.3: TTL 255, for both the multicast group and unicast peers.
            try setOption(fd, Int32(IPPROTO_IP), IP_TTL, Int32(VRRP.ttl), "IP_TTL")
            try setOption(fd, Int32(IPPROTO_IP), IP_MULTICAST_TTL, Int32(VRRP.ttl), "IP_MULTICAST_TTL")
            // Our own adverts are not news.
            try setOption(fd, Int32(IPPROTO_IP), IP_MULTICAST_LOOP, Int32(0), "IP_MULTICAST_LOOP")
            // Internetwork control precedence, as keepalived sends (TOS 0xc0).
            try setOption(fd, Int32(IPPROTO_IP), IP_TOS, Int32(0xc0), "IP_TOS")
            var mreq = ip_mreqn()
            mreq.imr_multiaddr.s_addr = VRRP.multicastGroup.rawValue.bigEndian
            mreq.imr_ifindex = interface.index
            try setOption(fd, Int32(IPPROTO_IP), IP_MULTICAST_IF, mreq, "IP_MULTICAST_IF \(interface.name)")
            if multicast {
                try setOption(fd, Int32(IPPROTO_IP), IP_ADD_MEMBERSHIP, mreq, "join 224.0.0.18 on \(interface.name)")
            }
            // A bigger receive buffer rides out a burst while the thread is off the CPU.
            try setOption(fd, SOL_SOCKET, SO_RCVBUF, Int32(256 * 1024), "SO_RCVBUF")
        } catch {
            close(fd)
            throw error
        }
    }

    deinit { close(fd) }

    /// Sends one VRRP message (the kernel adds the IP header with our source address).
    func send(_ message: [UInt8], from source: IPv4Address, to destination: IPv4Address) throws(SystemError) {
        var to = IPv4Endpoint(address: destination, port: 0).sockaddrIn
        // The source is chosen by binding per send through IP_PKTINFO.
        var pktinfo = in_pktinfo()
        pktinfo.ipi_ifindex = interface.index
        pktinfo.ipi_spec_dst.s_addr = source.rawValue.bigEndian
        let controlLength = MemoryLayout<cmsghdr>.stride + MemoryLayout<in_pktinfo>.stride
        var control = [UInt8](repeating: 0, count: controlLength)
        var message = message
        let sent = message.withUnsafeMutableBytes { payload -> Int in
            control.withUnsafeMutableBytes { controlBytes -> Int in
                withUnsafeMutablePointer(to: &to) { toPointer -> Int in
                    var iov = iovec(iov_base: payload.baseAddress, iov_len: payload.count)
                    return withUnsafeMutablePointer(to: &iov) { iovPointer -> Int in
                        var msg = msghdr()
                        msg.msg_name = UnsafeMutableRawPointer(toPointer)
                        msg.msg_namelen = socklen_t(MemoryLayout<sockaddr_in>.size)
                        msg.msg_iov = iovPointer
                        msg.msg_iovlen = 1
                        msg.msg_control = controlBytes.baseAddress
                        msg.msg_controllen = controlLength
                        let header = controlBytes.baseAddress!.assumingMemoryBound(to: cmsghdr.self)
                        header.pointee.cmsg_level = Int32(IPPROTO_IP)
                        header.pointee.cmsg_type = Int32(IP_PKTINFO)
                        header.pointee.cmsg_len = MemoryLayout<cmsghdr>.stride + MemoryLayout<in_pktinfo>.size
                        (controlBytes.baseAddress! + MemoryLayout<cmsghdr>.stride).copyMemory(from: &pktinfo, byteCount: MemoryLayout<in_pktinfo>.size)
                        return sendmsg(fd, &msg, 0)
                    }
                }
            }
        }
        if sent < 0 { throw SystemError("send advertisement to \(destination) on \(interface.name)") }
    }

    /// One datagram, or nil when none is waiting.
    func receive(into buffer: inout [UInt8]) throws(SystemError) -> Int? {
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n < 0 {
            if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return nil }
            throw SystemError("receive on \(interface.name)")
        }
        return n
    }
}
