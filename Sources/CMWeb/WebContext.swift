import CMConsole
import Hummingbird
import NIOCore

/// What a request carries through the console's middleware: the client's address (for the
/// login throttle and the journal) and, once the session middleware found one, its session.
public struct WebContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The client's IP address, "unknown" when the channel has none (tests).
    public let client: String
    public var session: Session?
    public var token: String?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        client = source.channel.remoteAddress?.ipAddress ?? "unknown"
    }

    /// Forms and API bodies are small; the listener's own cap (max_body_bytes) comes first.
    public var maxUploadSize: Int { 64 * 1024 }
}
