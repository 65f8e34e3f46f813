import NIOCore

/// What a request handler knows about its caller.
public struct RequestContext: Sendable {
    public var peer: PeerCredentials
    public var peerName: String
}

/// Maps message types to handlers. Handlers take and return typed bodies; the router does
/// the JSON on both sides so a daemon only writes `router.on(MessageType.healthList) { … }`.
public struct WireRouter: Sendable {
    typealias Handler = @Sendable (ReceivedEnvelope, RequestContext) async throws -> ByteBuffer
    private(set) var handlers: [String: Handler] = [:]

    public init() {}

    public mutating func on<Request: Decodable & Sendable, Response: Encodable & Sendable>(
        _ type: String, _ request: Request.Type = Request.self,
        _ handler: @escaping @Sendable (Request, RequestContext) async throws -> Response
    ) {
        handlers[type] = { envelope, context in
            let body = try envelope.body(as: Request.self)
            let response = try await handler(body, context)
            do {
                return try ByteBuffer.envelope(EnvelopeHeader(kind: .response, id: envelope.header.id, type: type), body: response)
            } catch {
                throw WireError(.internal, "\(type): cannot encode response: \(error)")
            }
        }
    }

    public var types: [String] { handlers.keys.sorted() }

    func handler(for type: String) -> Handler? { handlers[type] }
}
