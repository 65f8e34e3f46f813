import Glibc

/// Bytes waiting for a socket: [start, end) of one growable buffer. Appending moves what is
/// left to the front or grows the buffer; nothing is allocated once it is big enough, so a
/// connection allocates its buffers once, not per request.
struct ByteQueue {
    private(set) var base: UnsafeMutableRawPointer?
    private(set) var capacity = 0
    private(set) var start = 0
    private(set) var end = 0

    var count: Int { end - start }
    var isEmpty: Bool { end == start }

    /// The byte at `offset` from the front.
    var front: UnsafeMutableRawPointer { base! + start }

    mutating func reserve(_ n: Int) {
        if capacity - end >= n { return }
        if start > 0, end - start + n <= capacity {
            memmove(base!, base! + start, end - start)
            end -= start
            start = 0
            return
        }
        var size = max(capacity * 2, 4096)
        while size < end - start + n { size *= 2 }
        let fresh = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
        if let base {
            fresh.copyMemory(from: base + start, byteCount: end - start)
            base.deallocate()
        }
        end -= start
        start = 0
        base = fresh
        capacity = size
    }

    mutating func append(_ bytes: UnsafeRawPointer, _ n: Int) {
        guard n > 0 else { return }
        reserve(n)
        (base! + end).copyMemory(from: bytes, byteCount: n)
        end += n
    }

    mutating func append(_ text: StaticString) {
        append(text.utf8Start, text.utf8CodeUnitCount)
    }

    mutating func append(_ bytes: [UInt8], _ range: Range<Int>) {
        guard !range.isEmpty else { return }
        bytes.withUnsafeBufferPointer { append($0.baseAddress! + range.lowerBound, range.count) }
    }

    mutating func append(_ bytes: [UInt8]) { append(bytes, 0..<bytes.count) }

    mutating func append(byte: UInt8) {
        reserve(1)
        (base! + end).storeBytes(of: byte, as: UInt8.self)
        end += 1
    }

    mutating func appendDecimal(_ value: Int) {
        if value >= 10 { appendDecimal(value / 10) }
        append(byte: UInt8(48 + value % 10))
    }

    mutating func appendHex(_ value: Int) {
        if value >= 16 { appendHex(value / 16) }
        let digit = UInt8(value % 16)
        append(byte: digit < 10 ? 48 + digit : 87 + digit)
    }

    /// Body bytes, as they are or as one chunk of a chunked body.
    mutating func appendBody(_ bytes: UnsafeRawPointer, _ count: Int, chunked: Bool) {
        if chunked {
            appendHex(count)
            append("\r\n")
            append(bytes, count)
            append("\r\n")
        } else {
            append(bytes, count)
        }
    }

    /// The first `n` bytes were written.
    mutating func consume(_ n: Int) {
        start += n
        if start == end { start = 0; end = 0 }
    }

    mutating func removeAll() {
        start = 0
        end = 0
    }

    mutating func free() {
        base?.deallocate()
        base = nil
        capacity = 0
        start = 0
        end = 0
    }
}
