import CMTypes
import NIOCore

/// An ICMP echo request or reply (RFC 792, "Echo or Echo Reply Message"). Pure value type:
/// `init(parsing:)` reads one message without its IP header, `serialize(into:)` writes one
/// with its checksum.
///
///     0                   1                   2                   3
///     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
///    |     Type      |     Code      |          Checksum             |
///    |           Identifier          |        Sequence Number        |
///    |     Data ...
public struct ICMPEcho: Sendable, Equatable {
    public enum Kind: UInt8, Sendable {
        case echoReply = 0
        case echoRequest = 8
    }

    public var kind: Kind
    public var code: UInt8
    public var identifier: UInt16
    public var sequence: UInt16
    public var payload: [UInt8]

    public static let headerLength = 8
    /// Larger than any echo we send; a reply is never longer than its request.
    public static let maxPayload = 1472

    public init(kind: Kind, code: UInt8 = 0, identifier: UInt16, sequence: UInt16, payload: [UInt8]) {
        self.kind = kind
        self.code = code
        self.identifier = identifier
        self.sequence = sequence
        self.payload = payload
    }

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case tooShort(Int)
        case tooLong(Int)
        case badChecksum(UInt16)
        /// Any other ICMP message (destination unreachable, time exceeded, …).
        case notEcho(type: UInt8, code: UInt8)

        public var description: String {
            switch self {
            case .tooShort(let n): return "ICMP message of \(n) bytes is shorter than the 8-byte header"
            case .tooLong(let n): return "ICMP echo of \(n) bytes is longer than \(ICMPEcho.headerLength + ICMPEcho.maxPayload)"
            case .badChecksum(let sum): return "ICMP checksum does not verify (sum 0x\(String(sum, radix: 16)))"
            case .notEcho(let type, let code): return "ICMP type \(type) code \(code) is not an echo"
            }
        }
    }

    /// Reads the whole readable part of `buffer` as one message; the checksum must verify
    /// (RFC 792: computed over the whole ICMP message).
    public init(parsing buffer: inout ByteBuffer) throws(ParseError) {
        let length = buffer.readableBytes
        guard length >= Self.headerLength else { throw .tooShort(length) }
        guard length <= Self.headerLength + Self.maxPayload else { throw .tooLong(length) }
        let sum = Self.checksum(buffer.readableBytesView)
        guard sum == 0 else { throw .badChecksum(sum) }
        guard let type = buffer.readInteger(as: UInt8.self), let code = buffer.readInteger(as: UInt8.self),
              buffer.readInteger(as: UInt16.self) != nil,
              let identifier = buffer.readInteger(as: UInt16.self), let sequence = buffer.readInteger(as: UInt16.self),
              let payload = buffer.readBytes(length: buffer.readableBytes) else { throw .tooShort(length) }
        guard let kind = Kind(rawValue: type) else { throw .notEcho(type: type, code: code) }
        self.init(kind: kind, code: code, identifier: identifier, sequence: sequence, payload: payload)
    }

    /// Appends the message to `buffer`, checksum filled in.
    public func serialize(into buffer: inout ByteBuffer) {
        let start = buffer.writerIndex
        buffer.writeInteger(kind.rawValue)
        buffer.writeInteger(code)
        buffer.writeInteger(UInt16(0))
        buffer.writeInteger(identifier)
        buffer.writeInteger(sequence)
        buffer.writeBytes(payload)
        let written = buffer.getSlice(at: start, length: buffer.writerIndex - start)?.readableBytesView
        buffer.setInteger(Self.checksum(written ?? ByteBuffer().readableBytesView), at: start + 2)
    }

    /// The Internet checksum (RFC 1071): the ones' complement of the ones' complement sum
    /// of 16-bit big-endian words, an odd last byte padded with zero. Over a message that
    /// carries its checksum, the result is 0.
    public static func checksum(_ bytes: some Sequence<UInt8>) -> UInt16 {
        var sum: UInt32 = 0
        var high: UInt8?
        for byte in bytes {
            if let h = high {
                sum &+= UInt32(h) << 8 | UInt32(byte)
                high = nil
            } else {
                high = byte
            }
        }
        if let h = high { sum &+= UInt32(h) << 8 }
        while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
        return ~UInt16(truncatingIfNeeded: sum)
    }
}

/// The IPv4 header in front of what a raw socket receives (RFC 791 §3.1): only what is
/// needed to find the ICMP message behind it.
public struct IPv4Header: Sendable, Equatable {
    public var source: IPv4Address
    public var destination: IPv4Address
    public var `protocol`: UInt8
    /// IHL × 4: where the payload starts.
    public var headerLength: Int

    public static let icmp: UInt8 = 1

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case tooShort(Int)
        case notVersion4(UInt8)
        case badHeaderLength(Int)
        case badTotalLength(Int)

        public var description: String {
            switch self {
            case .tooShort(let n): return "IPv4 packet of \(n) bytes is shorter than its header"
            case .notVersion4(let v): return "IP version \(v), expected 4"
            case .badHeaderLength(let n): return "IPv4 header length \(n) outside 20…60 or beyond the packet"
            case .badTotalLength(let n): return "IPv4 total length \(n) beyond the packet"
            }
        }
    }

    /// Reads the header and moves the reader index to the payload; the writer index is
    /// cut to the total length (anything after it is link padding).
    public init(parsing buffer: inout ByteBuffer) throws(ParseError) {
        let available = buffer.readableBytes
        guard available >= 20, let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { throw .tooShort(available) }
        guard first >> 4 == 4 else { throw .notVersion4(first >> 4) }
        let ihl = Int(first & 0x0f) * 4
        guard ihl >= 20, ihl <= available else { throw .badHeaderLength(ihl) }
        let start = buffer.readerIndex
        guard let total = buffer.getInteger(at: start + 2, as: UInt16.self),
              let proto = buffer.getInteger(at: start + 9, as: UInt8.self),
              let src = buffer.getInteger(at: start + 12, as: UInt32.self),
              let dst = buffer.getInteger(at: start + 16, as: UInt32.self) else { throw .tooShort(available) }
        // Linux hands raw sockets the total length as sent; 0 would mean TSO, never ICMP.
        guard Int(total) >= ihl, Int(total) <= available else { throw .badTotalLength(Int(total)) }
        source = IPv4Address(rawValue: src)
        destination = IPv4Address(rawValue: dst)
        self.protocol = proto
        headerLength = ihl
        buffer.moveWriterIndex(to: start + Int(total))
        buffer.moveReaderIndex(forwardBy: ihl)
    }
}
