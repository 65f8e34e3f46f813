import Foundation
import Glibc
import Testing

// Loopback peers for the probe tests: a real nginx, and bare sockets that refuse, stay
// silent, or drop connection attempts. Everything listens on 127.0.0.1 only and is torn
// down by the test that made it.

/// A TCP socket on 127.0.0.1 with a kernel-chosen port.
final class ProbeTestSocket {
    let fd: Int32
    let port: UInt16

    enum Mode {
        /// Bound, not listening: a SYN gets an RST ("Connection refused"), and no other
        /// program can take the port while the test runs.
        case closed
        /// Listening, never accepting: the kernel completes handshakes into the backlog,
        /// so clients connect and then hear nothing.
        case silent
        /// Listening with a full accept queue: further SYNs are dropped, connects time out.
        case full
    }

    private var fillers: [Int32] = []

    init?(_ mode: Mode) {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { return nil }
        var sa = probeLoopback(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        guard withUnsafeMutablePointer(to: &sa, { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, length) == 0 && getsockname(s, $0, &length) == 0 } }) else {
            close(s)
            return nil
        }
        fd = s
        port = UInt16(bigEndian: sa.sin_port)
        switch mode {
        case .closed:
            break
        case .silent:
            listen(fd, 64)
        case .full:
            // Backlog 0 queues one connection; the next attempts find the queue full.
            listen(fd, 0)
            for _ in 0..<2 {
                let c = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
                var to = probeLoopback(port: port)
                _ = withUnsafePointer(to: &to) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(c, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
                fillers.append(c)
            }
        }
    }

    deinit {
        for c in fillers { close(c) }
        close(fd)
    }
}

func probeLoopback(port: UInt16) -> sockaddr_in {
    var sa = sockaddr_in()
    sa.sin_family = sa_family_t(AF_INET)
    sa.sin_port = port.bigEndian
    sa.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
    return sa
}

/// True once something accepts TCP connections on 127.0.0.1:port.
func probeCanConnect(port: UInt16) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    defer { close(fd) }
    var sa = probeLoopback(port: port)
    return withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0
}

/// A real nginx on 127.0.0.1:<free port>, its pid file, logs and temp files in a temporary
/// directory; stopped by PID (SIGTERM to the master, which stops its worker) on `stop()`.
///
///     /      200 "ok"                 /down  503 "down"
///     /host  200 and the Host header  /conn  200 and nginx's connection serial number
///     /big   200 and a 200 KiB file
final class ProbeNginx {
    static let binary = "/usr/sbin/nginx"
    static let bigBodyBytes = 200 << 10

    let dir: URL
    let port: UInt16
    private let process: Process

    /// nil with the reason printed when nginx is missing or does not start.
    static func start() -> ProbeNginx? {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            print("skipped: \(binary) not installed (apt-get install nginx-light)")
            return nil
        }
        // A port just released by the kernel may be taken again by the time nginx binds.
        for _ in 0..<3 {
            if let nginx = ProbeNginx() { return nginx }
        }
        print("skipped: nginx did not start on loopback")
        return nil
    }

    private init?() {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("cm-probe-nginx-\(UUID().uuidString.prefix(8))")
        // The kernel picks a free port; it is released at once for nginx to bind.
        guard let port = ProbeTestSocket(.closed)?.port else { return nil }
        self.port = port
        let d = dir.path
        let conf = """
            worker_processes 1;
            worker_rlimit_nofile 8192;
            pid \(d)/nginx.pid;
            error_log \(d)/error.log;
            events { worker_connections 4096; }
            http {
                access_log off;
                client_body_temp_path \(d)/body; proxy_temp_path \(d)/proxy; fastcgi_temp_path \(d)/fastcgi;
                uwsgi_temp_path \(d)/uwsgi; scgi_temp_path \(d)/scgi;
                keepalive_requests 100000;
                server {
                    listen 127.0.0.1:\(port);
                    default_type text/plain;
                    location = / { return 200 "ok\\n"; }
                    location = /down { return 503 "down\\n"; }
                    location = /host { return 200 "$host"; }
                    location = /conn { return 200 "$connection"; }
                    location = /big { alias \(d)/big.txt; }
                }
            }
            """
        do {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            try Data(conf.utf8).write(to: dir.appendingPathComponent("nginx.conf"))
            try Data(repeating: UInt8(ascii: "x"), count: Self.bigBodyBytes).write(to: dir.appendingPathComponent("big.txt"))
        } catch {
            return nil
        }
        process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = ["-c", "\(d)/nginx.conf", "-p", d, "-g", "daemon off;"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return nil }
        let deadline = ContinuousClock.now + .seconds(5)
        while ContinuousClock.now < deadline, process.isRunning {
            if probeCanConnect(port: port) { return }
            usleep(20_000)
        }
        stop()
        return nil
    }

    func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGTERM)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: dir)
    }

    func url(_ path: String) -> String { "http://127.0.0.1:\(port)\(path)" }
}

@Suite struct ProbeServersTests {
    @Test func loopbackPeersBehaveAsDescribed() {
        guard let closed = ProbeTestSocket(.closed), let silent = ProbeTestSocket(.silent) else {
            Issue.record("cannot create loopback sockets")
            return
        }
        #expect(!probeCanConnect(port: closed.port))
        #expect(probeCanConnect(port: silent.port))
    }
}
