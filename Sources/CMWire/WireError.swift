/// An error as it travels on the wire: a stable machine code plus a human message.
public struct WireError: Error, Codable, Sendable, Equatable, CustomStringConvertible {
    /// Stable codes: clients switch on these, so existing values never change meaning.
    public enum Code: String, Codable, Sendable {
        case badFrame = "bad_frame"
        case frameTooLarge = "frame_too_large"
        case badEnvelope = "bad_envelope"
        case versionMismatch = "version_mismatch"
        case helloRequired = "hello_required"
        case unknownType = "unknown_type"
        case invalidArgument = "invalid_argument"
        case notFound = "not_found"
        case permissionDenied = "permission_denied"
        case unavailable = "unavailable"
        case notRunning = "not_running"
        case conflict = "conflict"
        case `internal` = "internal"
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
