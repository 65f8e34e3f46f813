import Glibc

/// Reads files of /proc (and /sys) whole. They report a size of 0 and hand out their text a
/// page at a time: Foundation's `String(contentsOfFile:)` stops after the first read, which
/// for /proc/net/tcp or /proc/self/mountinfo is the first 4 KB (about 27 lines) of many.
public enum ProcFile {
    /// The file's text, or nil when it cannot be opened. At most `limit` bytes.
    public static func read(_ path: String, limit: Int = 64 << 20) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while bytes.count < limit {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
