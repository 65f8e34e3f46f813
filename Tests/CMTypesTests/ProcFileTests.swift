import CMTypes
import Foundation
import Glibc
import Testing

@Suite struct ProcFileTests {
    /// /proc/net/tcp with more sockets than one page holds: Foundation read 27 lines of it,
    /// and cm-replicad missed its connections to the other master's brick.
    @Test func aProcFileIsReadWholeNotOnePage() throws {
        var fds: [Int32] = []
        defer { for fd in fds { close(fd) } }
        for _ in 0..<100 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            try #require(fd >= 0)
            fds.append(fd)
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_addr.s_addr = inet_addr("127.0.0.1")
            let rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            try #require(rc == 0 && listen(fd, 1) == 0)
        }
        let text = try #require(ProcFile.read("/proc/net/tcp"))
        #expect(text.split(separator: "\n").count > 100)
        #expect(text.utf8.count > 4096)
        #expect(ProcFile.read("/proc/no-such-file") == nil)
    }
}
