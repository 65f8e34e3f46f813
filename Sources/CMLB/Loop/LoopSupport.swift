import CLinux
import CMConfig
import CMTypes
import Foundation
import Glibc
import Synchronization

/// Outgoing connections of both modes.
enum L4Socket {
    /// The CPU that took `fd`'s latest packets (SO_INCOMING_CPU), -1 when the kernel does not say.
    static func incomingCPU(_ fd: Int32) -> Int32 {
        var cpu: Int32 = -1
        var length = socklen_t(MemoryLayout<Int32>.size)
        return getsockopt(fd, SOL_SOCKET, SO_INCOMING_CPU, &cpu, &length) == 0 ? cpu : -1
    }

    /// A non-blocking TCP_NODELAY socket connecting to `server`: `done` when the connect
    /// completed at once; fd -1 and the errno when it failed at once.
    ///
    /// `dataReady`: bytes for the server are in hand and go out as soon as the connection is up.
    /// The kernel then leaves out the bare ACK that ends the handshake and the first data carries
    /// it (TCP_QUICKACK off before connect(2), as HAProxy's `option tcp-smart-connect`): one
    /// segment less, and the server finds the connection and its first bytes together. Without
    /// data in hand that ACK could wait up to 200 ms, which a server that speaks first would
    /// notice, so only then.
    static func connect(to server: IPv4Endpoint, dataReady: Bool) -> (fd: Int32, done: Bool, errno: Int32) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return (-1, false, errno) }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, 4)
        if dataReady {
            var zero: Int32 = 0
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_QUICKACK, &zero, 4)
        }
        var address = server.sockaddrIn
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0, errno != EINPROGRESS {
            let e = errno
            Glibc.close(fd)
            return (-1, false, e)
        }
        return (fd, rc == 0, 0)
    }

    /// How a non-blocking connect ended, from the socket's epoll events: nil while it goes on,
    /// 0 when connected, else the errno. Only an error or hang-up needs SO_ERROR asked (a
    /// clean connect costs no getsockopt).
    static func connectResult(_ fd: Int32, events: UInt32) -> Int32? {
        let bad = EPOLLERR.rawValue | EPOLLHUP.rawValue
        guard events & (EPOLLOUT.rawValue | bad) != 0 else { return nil }
        guard events & bad != 0 else { return 0 }
        var error: Int32 = 0
        var length = socklen_t(4)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
        return error != 0 ? error : ECONNREFUSED
    }
}

/// What a loop's epoll set points at: the owner of a socket.
protocol LoopHandler: AnyObject {
    func handle(fd: Int32, events: UInt32)
}

/// A client connection a loop owns: timed out by its sweep, asked to finish or closed when
/// the daemon stops.
protocol LoopConnection: LoopHandler {
    /// The frontend runtime it was accepted under (whose limiter counted it).
    var runtime: FrontendRuntime { get }
    func checkTimeouts(now: UInt64)
    func quiesce(now: UInt64)
    func close()
}

/// sched_setaffinity(2) for the loops' threads.
enum CPUAffinity {
    /// 1024 CPUs, glibc's cpu_set_t.
    typealias Mask = (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                      UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)
    static let empty: Mask = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)

    /// The CPUs this process may run on, in order.
    static func allowed() -> [Int] {
        var mask = empty
        let rc = withUnsafeMutableBytes(of: &mask) { sched_getaffinity(0, UInt($0.count), $0.baseAddress) }
        guard rc == 0 else { return [] }
        return withUnsafeBytes(of: &mask) { bytes in (0..<bytes.count * 8).filter { bytes[$0 / 8] & UInt8(1 << ($0 % 8)) != 0 } }
    }

    /// Keeps the calling thread on `cpu`; 0, or the errno of the failure.
    static func pin(to cpu: Int) -> Int32 {
        var mask = empty
        withUnsafeMutableBytes(of: &mask) { $0[cpu / 8] |= UInt8(1 << (cpu % 8)) }
        let rc = withUnsafeBytes(of: &mask) { sched_setaffinity(0, UInt($0.count), $0.baseAddress) }
        return rc == 0 ? 0 : errno
    }
}

enum L4Clock {
    static func nowMs() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1000 + UInt64(ts.tv_nsec) / 1_000_000
    }

    static func ms(_ d: Duration) -> UInt64 {
        UInt64(d.components.seconds) * 1000 + UInt64(d.components.attoseconds / 1_000_000_000_000_000)
    }
}
