import NIOCore

/// Wire framing: a 4-byte big-endian payload length, then the payload.
///
/// The length is checked against `maximumLength` *before* anything is allocated for the
/// payload, so a peer cannot make a daemon reserve memory by announcing a huge frame.
public enum Frame {
    public static let headerLength = 4
    public static let defaultMaximumLength = 1 << 20

    /// Takes one complete frame's payload off the front of `buffer`, or returns nil when the
    /// frame is not complete yet (nothing is consumed then).
    public static func decode(from buffer: inout ByteBuffer, maximumLength: Int = defaultMaximumLength) throws(WireError) -> ByteBuffer? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, endianness: .big, as: UInt32.self) else { return nil }
        guard length <= UInt32(maximumLength) else {
            throw WireError(.frameTooLarge, "frame of \(length) bytes exceeds the limit of \(maximumLength) bytes")
        }
        guard length > 0 else { throw WireError(.badFrame, "empty frame") }
        guard buffer.readableBytes >= headerLength + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: headerLength)
        return buffer.readSlice(length: Int(length))
    }

    /// Appends one frame carrying `payload` to `buffer`.
    public static func encode(_ payload: some Collection<UInt8>, into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt32(payload.count), endianness: .big)
        buffer.writeBytes(payload)
    }
}

/// NIO inbound decoder: bytes → one `ByteBuffer` per frame. A bad frame fires an error,
/// which the connection handler answers by closing that connection only.
public struct FrameDecoder: ByteToMessageDecoder, Sendable {
    public typealias InboundOut = ByteBuffer
    public let maximumLength: Int

    public init(maximumLength: Int = Frame.defaultMaximumLength) { self.maximumLength = maximumLength }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let payload = try Frame.decode(from: &buffer, maximumLength: maximumLength) else { return .needMoreData }
        context.fireChannelRead(Self.wrapInboundOut(payload))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        // Bytes left over at EOF are a truncated frame: drop them, the connection is going away.
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }
}

/// NIO outbound encoder: one payload `ByteBuffer` → one frame.
public struct FrameEncoder: MessageToByteEncoder, Sendable {
    public typealias OutboundIn = ByteBuffer
    public init() {}
    public func encode(data: ByteBuffer, out: inout ByteBuffer) throws {
        out.writeInteger(UInt32(data.readableBytes), endianness: .big)
        out.writeImmutableBuffer(data)
    }
}
