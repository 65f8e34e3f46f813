import Foundation
import Glibc

/// Puts `data` at `path` so that a reader sees the old file or the whole new one, and a crash
/// leaves one of the two: written beside it, fsynced, renamed over it. The one such writer of
/// the suite (ganesha's exports, the replicated state and configuration, snapshot records).
public func replaceFile(_ path: String, with data: Data, mode: mode_t = 0o644) throws {
    let tmp = "\(path).tmp-\(getpid())-\(UInt32.random(in: 0 ... .max))"
    let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
    guard fd >= 0 else { throw SystemError("creating \(tmp)") }
    let ok = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) == $0.count } && fsync(fd) == 0
    close(fd)
    guard ok, rename(tmp, path) == 0 else {
        let failure = SystemError("writing \(path)")
        unlink(tmp)
        throw failure
    }
}
