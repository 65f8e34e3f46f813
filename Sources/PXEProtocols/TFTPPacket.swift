/// TFTP (RFC 1350) with option negotiation (RFC 2347): blksize (RFC 2348), timeout and tsize
/// (RFC 2349), windowsize (RFC 7440). Packets as values; no I/O.
public enum TFTPPacket: Equatable, Sendable {
    /// RRQ / WRQ: file name, mode ("octet", "netascii"), options in the order sent.
    case readRequest(file: String, mode: String, options: [TFTPOption])
    case writeRequest(file: String, mode: String, options: [TFTPOption])
    case data(block: UInt16, payload: [UInt8])
    case ack(block: UInt16)
    case error(code: TFTPErrorCode, message: String)
    /// RFC 2347: the options the server accepts, with the values it chose.
    case optionAck([TFTPOption])

    public enum Opcode: UInt16, Sendable { case rrq = 1, wrq, data, ack, error, oack }

    /// Largest datagram accepted: a 65464-octet block (RFC 2348's maximum) and its header.
    public static let maximumLength = 65468

    public init(parsing bytes: some Collection<UInt8>) throws(TFTPParseError) {
        let b = Array(bytes)
        guard b.count >= 2 else { throw .truncated("\(b.count) octets, no opcode") }
        guard b.count <= Self.maximumLength else { throw .tooLong(b.count) }
        guard let op = Opcode(rawValue: UInt16(b[0]) << 8 | UInt16(b[1])) else { throw .badOpcode(UInt16(b[0]) << 8 | UInt16(b[1])) }
        switch op {
        case .rrq, .wrq:
            var fields = try Self.strings(b[2...])
            guard fields.count >= 2 else { throw .truncated("a request needs a file name and a mode") }
            let file = fields.removeFirst(), mode = fields.removeFirst().lowercased()
            guard !file.isEmpty else { throw .badRequest("empty file name") }
            guard mode == "octet" || mode == "netascii" || mode == "mail" else { throw .badRequest("mode \"\(mode)\"") }
            let options = try Self.options(fields)
            self = op == .rrq ? .readRequest(file: file, mode: mode, options: options) : .writeRequest(file: file, mode: mode, options: options)
        case .data:
            guard b.count >= 4 else { throw .truncated("DATA without a block number") }
            self = .data(block: UInt16(b[2]) << 8 | UInt16(b[3]), payload: Array(b[4...]))
        case .ack:
            guard b.count >= 4 else { throw .truncated("ACK without a block number") }
            self = .ack(block: UInt16(b[2]) << 8 | UInt16(b[3]))
        case .error:
            guard b.count >= 5 else { throw .truncated("ERROR without code and message") }
            let code = TFTPErrorCode(rawValue: UInt16(b[2]) << 8 | UInt16(b[3])) ?? .notDefined
            let message = try Self.strings(b[4...]).first ?? ""
            self = .error(code: code, message: message)
        case .oack:
            self = .optionAck(try Self.options(try Self.strings(b[2...])))
        }
    }

    /// NUL-terminated strings; the last must be terminated too.
    static func strings(_ b: ArraySlice<UInt8>) throws(TFTPParseError) -> [String] {
        guard b.isEmpty || b.last == 0 else { throw .truncated("a string is not NUL-terminated") }
        var out: [String] = []
        var start = b.startIndex
        for i in b.indices where b[i] == 0 {
            out.append(String(decoding: b[start..<i], as: UTF8.self))
            start = i + 1
        }
        return out
    }

    static func options(_ fields: [String]) throws(TFTPParseError) -> [TFTPOption] {
        guard fields.count % 2 == 0 else { throw .badRequest("option \"\(fields.last ?? "")\" has no value") }
        return stride(from: 0, to: fields.count, by: 2).map { TFTPOption(name: fields[$0].lowercased(), value: fields[$0 + 1]) }
    }

    public func serialize() -> [UInt8] {
        func op(_ o: Opcode) -> [UInt8] { [UInt8(o.rawValue >> 8), UInt8(o.rawValue & 0xff)] }
        func z(_ s: String) -> [UInt8] { Array(s.utf8) + [0] }
        func opts(_ o: [TFTPOption]) -> [UInt8] { o.flatMap { z($0.name) + z($0.value) } }
        switch self {
        case .readRequest(let file, let mode, let o): return op(.rrq) + z(file) + z(mode) + opts(o)
        case .writeRequest(let file, let mode, let o): return op(.wrq) + z(file) + z(mode) + opts(o)
        case .data(let block, let payload): return op(.data) + [UInt8(block >> 8), UInt8(block & 0xff)] + payload
        case .ack(let block): return op(.ack) + [UInt8(block >> 8), UInt8(block & 0xff)]
        case .error(let code, let message): return op(.error) + [UInt8(code.rawValue >> 8), UInt8(code.rawValue & 0xff)] + z(message)
        case .optionAck(let o): return op(.oack) + opts(o)
        }
    }
}

public struct TFTPOption: Equatable, Sendable {
    public var name: String
    public var value: String
    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

/// RFC 1350 error codes, and 8 from RFC 2347 (option negotiation refused).
public enum TFTPErrorCode: UInt16, Sendable {
    case notDefined = 0, fileNotFound, accessViolation, diskFull, illegalOperation, unknownTransferID, fileExists, noSuchUser, optionRefused
}

public enum TFTPParseError: Error, Equatable, Sendable, CustomStringConvertible {
    case truncated(String)
    case tooLong(Int)
    case badOpcode(UInt16)
    case badRequest(String)

    public var reason: String {
        switch self {
        case .truncated: "truncated"
        case .tooLong: "too_long"
        case .badOpcode: "bad_opcode"
        case .badRequest: "bad_request"
        }
    }

    public var description: String {
        switch self {
        case .truncated(let what): "truncated: \(what)"
        case .tooLong(let n): "\(n) octets, longer than any TFTP packet"
        case .badOpcode(let o): "opcode \(o), not 1-6"
        case .badRequest(let why): "bad request: \(why)"
        }
    }
}

/// What a read request may get, the server's answer to its options (RFC 2347-2349, 7440).
public struct TFTPNegotiation: Equatable, Sendable {
    public var blockSize = 512
    public var timeoutSeconds = 1
    public var windowSize = 1
    /// Options to put in an OACK; empty: the client asked for none we know (plain RFC 1350).
    public var acknowledged: [TFTPOption] = []

    /// Takes the options of a read request for a file of `size` octets; unknown options and
    /// out-of-range values are left out of the OACK (RFC 2347: the server ignores them).
    /// A `timeout` above `maxTimeoutSeconds` is left out too, and the server's 1 s stands.
    public init(requested: [TFTPOption], fileSize: Int, maxBlockSize: Int = 65464, maxWindowSize: Int = 64, maxTimeoutSeconds: Int = 5) {
        for o in requested {
            switch o.name {
            case "blksize":
                // RFC 2348: 8-65464; the server may answer with a smaller size.
                guard let v = Int(o.value), v >= 8, v <= 65464 else { continue }
                blockSize = min(v, maxBlockSize)
                acknowledged.append(TFTPOption(name: "blksize", value: String(blockSize)))
            case "timeout":
                // RFC 2349: "The specified timeout value must match the value specified by
                // the client": the server cannot lower it, only accept it or leave it out of
                // the OACK. A client's 255 s would hold the transfer for minutes per retry.
                guard let v = Int(o.value), (1...255).contains(v), v <= maxTimeoutSeconds else { continue }
                timeoutSeconds = v
                acknowledged.append(TFTPOption(name: "timeout", value: String(v)))
            case "tsize":
                // RFC 2349: in a read request the client sends 0 and the server answers the size.
                acknowledged.append(TFTPOption(name: "tsize", value: String(fileSize)))
            case "windowsize":
                guard let v = Int(o.value), (1...65535).contains(v) else { continue }
                windowSize = min(v, maxWindowSize)
                acknowledged.append(TFTPOption(name: "windowsize", value: String(windowSize)))
            default:
                continue
            }
        }
    }
}
