import CMTypes
import Glibc

/// Closes the descriptor when the value goes away (sockets owned by one runner thread).
final class FileDescriptor: @unchecked Sendable {
    let fd: Int32
    init(_ fd: Int32) { self.fd = fd }
    deinit { close(fd) }
}

func setOption<T: BitwiseCopyable>(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: T, _ what: String) throws(SystemError) {
    let rc = withUnsafeBytes(of: value) { setsockopt(fd, level, name, $0.baseAddress, socklen_t($0.count)) }
    if rc != 0 { throw SystemError(what) }
}

/// The current errno, named for use after a failed call inside a closure.
var lastErrno: Int32 { Glibc.errno }
