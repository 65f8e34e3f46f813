import Foundation
import NIOCore
import NIOFoundationCompat

/// The JSON envelope every frame carries:
/// `{"v":1,"kind":"request","id":7,"type":"health.list","body":{…}}`.
public enum EnvelopeKind: String, Codable, Sendable {
    case request, response, event, error
}

/// The envelope without its body; decoded first so the body can be decoded into the type
/// that `type` names.
public struct EnvelopeHeader: Codable, Sendable, Equatable {
    public var v: Int
    public var kind: EnvelopeKind
    public var id: UInt64
    public var type: String

    public init(v: Int = WireProtocol.version, kind: EnvelopeKind, id: UInt64, type: String) {
        self.v = v
        self.kind = kind
        self.id = id
        self.type = type
    }
}

public enum WireProtocol {
    public static let version = 1
    /// Message type names are short dotted words; anything longer is not ours.
    static let maximumTypeLength = 64
}

/// An envelope with a typed body, for encoding.
public struct Envelope<Body: Encodable & Sendable>: Encodable, Sendable {
    public var header: EnvelopeHeader
    public var body: Body

    public init(_ header: EnvelopeHeader, body: Body) {
        self.header = header
        self.body = body
    }

    enum CodingKeys: String, CodingKey { case v, kind, id, type, body }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(header.v, forKey: .v)
        try c.encode(header.kind, forKey: .kind)
        try c.encode(header.id, forKey: .id)
        try c.encode(header.type, forKey: .type)
        try c.encode(body, forKey: .body)
    }
}

private struct BodyOnly<Body: Decodable>: Decodable {
    var body: Body
}

/// A received envelope: the header, decoded, and the raw payload to decode the body from.
public struct ReceivedEnvelope: Sendable {
    public var header: EnvelopeHeader
    public var payload: ByteBuffer

    /// Decodes the header and checks what every envelope must satisfy.
    public init(payload: ByteBuffer) throws(WireError) {
        let header: EnvelopeHeader
        do {
            header = try WireJSON.decoder().decode(EnvelopeHeader.self, from: payload)
        } catch {
            throw WireError(.badEnvelope, "malformed envelope: \(Self.describe(error))")
        }
        guard header.v == WireProtocol.version else {
            throw WireError(.versionMismatch, "protocol version \(header.v) not supported (this end speaks \(WireProtocol.version))")
        }
        guard !header.type.isEmpty, header.type.utf8.count <= WireProtocol.maximumTypeLength else {
            throw WireError(.badEnvelope, "message type must be 1…\(WireProtocol.maximumTypeLength) bytes")
        }
        self.header = header
        self.payload = payload
    }

    /// Decodes the body as `Body`; a missing body decodes as `Empty` only.
    public func body<Body: Decodable>(as type: Body.Type) throws(WireError) -> Body {
        do {
            return try WireJSON.decoder().decode(BodyOnly<Body>.self, from: payload).body
        } catch {
            throw WireError(.invalidArgument, "\(header.type): bad body: \(Self.describe(error, droppingLeadingKeys: 1))")
        }
    }

    /// A one-line reason from a DecodingError, naming the field path.
    /// `droppingLeadingKeys` hides the envelope's own "body" key from paths inside the body.
    static func describe(_ error: any Error, droppingLeadingKeys: Int = 0) -> String {
        guard let error = error as? DecodingError else { return "\(error)" }
        func path(_ context: DecodingError.Context) -> String {
            let p = context.codingPath.dropFirst(droppingLeadingKeys).map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
            return p.isEmpty ? "" : "\(p): "
        }
        switch error {
        case .typeMismatch(let type, let c): return "\(path(c))expected \(type)"
        case .valueNotFound(let type, let c): return "\(path(c))missing \(type) value"
        case .keyNotFound(let key, let c): return "\(path(c))missing key \"\(key.stringValue)\""
        case .dataCorrupted(let c): return "\(path(c))\(c.debugDescription)"
        @unknown default: return "\(error)"
        }
    }
}

extension ByteBuffer {
    /// Encodes an envelope as a JSON payload (unframed).
    public static func envelope<Body: Encodable & Sendable>(_ header: EnvelopeHeader, body: Body) throws -> ByteBuffer {
        ByteBuffer(data: try WireJSON.encoder().encode(Envelope(header, body: body)))
    }
}

/// The body of messages that carry nothing.
public struct Empty: Codable, Sendable, Equatable {
    public init() {}
}

/// The JSON settings both ends use: dates as milliseconds since the epoch, stable key order.
public enum WireJSON {
    public static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .millisecondsSince1970
        return encoder
    }

    public static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .millisecondsSince1970
        return decoder
    }
}
