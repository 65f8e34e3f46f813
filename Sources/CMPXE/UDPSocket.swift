import CMTypes
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A blocking IPv4 UDP socket for cm-pxed's DHCP and TFTP threads: a receive timeout lets the
/// thread notice shutdown.
final class UDPSocket: @unchecked Sendable {
    let fd: Int32

    init(bind address: IPv4Address, port: UInt16, device: String? = nil, broadcast: Bool = false, reuse: Bool = true) throws {
        fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket") }
        var one: Int32 = 1
        if reuse { setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size)) }
        if broadcast { setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &one, socklen_t(MemoryLayout<Int32>.size)) }
        if let device {
            let ok = device.withCString { setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, $0, socklen_t(strlen($0) + 1)) }
            if ok != 0 { let e = errno; close(fd); throw SystemError("binding to interface \(device)", errno: e) }
        }
        var sa = IPv4Endpoint(address: address, port: port).sockaddrIn
        let rc = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        if rc != 0 { let e = errno; close(fd); throw SystemError("binding \(address):\(port)", errno: e) }
    }

    deinit { close(fd) }

    var localPort: UInt16 {
        var sa = sockaddr_in(), len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return UInt16(bigEndian: sa.sin_port)
    }

    func setReceiveTimeout(_ d: Duration) {
        let us = d.components.seconds * 1_000_000 + d.components.attoseconds / 1_000_000_000_000
        var tv = timeval(tv_sec: Int(us / 1_000_000), tv_usec: Int(us % 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    func setBufferSizes(_ bytes: Int32) {
        var n = bytes
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &n, socklen_t(MemoryLayout<Int32>.size))
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &n, socklen_t(MemoryLayout<Int32>.size))
    }

    /// One datagram into `buffer`; nil on timeout or interruption.
    func receive(into buffer: inout [UInt8]) throws -> (count: Int, from: IPv4Endpoint)? {
        var sa = sockaddr_in(), len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let n = buffer.withUnsafeMutableBytes { b in
            withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, b.baseAddress, b.count, 0, $0, &len) } }
        }
        if n < 0 {
            if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return nil }
            throw SystemError("receiving")
        }
        return (n, IPv4Endpoint(sa))
    }

    func send(_ bytes: UnsafeRawBufferPointer, to: IPv4Endpoint) throws {
        var sa = to.sockaddrIn
        let n = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, bytes.baseAddress, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        if n < 0 { throw SystemError("sending to \(to)") }
    }

    func send(_ bytes: [UInt8], to: IPv4Endpoint) throws {
        try bytes.withUnsafeBytes { try send($0, to: to) }
    }

    func connect(to peer: IPv4Endpoint) throws {
        var sa = peer.sockaddrIn
        let rc = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        if rc != 0 { throw SystemError("connecting to \(peer)") }
    }

    /// On a connected socket.
    func send(_ bytes: UnsafeRawBufferPointer) -> Bool { Glibc.send(fd, bytes.baseAddress, bytes.count, 0) == bytes.count }

    /// Waits up to `timeout` for a datagram on a connected socket; nil on timeout.
    func receive(into buffer: inout [UInt8], timeout: Duration) -> Int? {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ms = Int32(clamping: timeout.milliseconds)
        let r = poll(&p, 1, max(ms, 1))
        guard r > 0 else { return nil }
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        return n >= 0 ? n : nil
    }
}
