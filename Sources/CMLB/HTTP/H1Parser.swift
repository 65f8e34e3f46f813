import CNIOLLHTTP

/// What the proxy does with the messages a parser finds.
protocol H1ParserDelegate: AnyObject {
    /// A message begins: its first byte (blank lines before a request do not count) is in.
    func messageBegin(_ parser: H1Parser)
    /// The head is complete (`parser.fields` and friends are filled). Returns 0 to go on,
    /// 1 for "this message has no body" (a response to HEAD), -1 to stop with an error.
    func headComplete(_ parser: H1Parser) -> Int32
    /// Body bytes, without chunked framing. 0 to go on, -1 to stop.
    func body(_ parser: H1Parser, _ bytes: UnsafeRawPointer, _ count: Int) -> Int32
    /// The message is complete: `H1Parser.pause` to stop after it, 0 to read on.
    func messageComplete(_ parser: H1Parser) -> Int32
}

extension H1ParserDelegate {
    func messageBegin(_ parser: H1Parser) {}
}

/// One header: ranges in `H1Parser.bytes`.
struct H1Field {
    var name: Range<Int>
    var value: Range<Int>
}

/// SwiftNIO's HTTP/1 parser (llhttp, as NIOHTTP1 vendors and wraps it in the CNIOLLHTTP
/// module) driven directly: the proxy forwards bytes, so it takes the parser's callbacks
/// instead of NIOHTTP1's `HTTPRequestHead` values and channel pipeline (docs/benchmarks.md
/// says why). The head is collected as byte ranges of one reused buffer;
/// the delegate gets the head, the body and the end of each message.
final class H1Parser {
    static let pause = Int32(HPE_PAUSED.rawValue)

    let state: UnsafeMutablePointer<llhttp_t>
    unowned(unsafe) var delegate: H1ParserDelegate
    /// Request line, header names and values of the message being parsed.
    private(set) var bytes: [UInt8] = []
    private(set) var method = 0..<0
    /// The request target, or a response's reason phrase.
    private(set) var target = 0..<0
    private(set) var fields: [H1Field] = []
    /// Head bytes allowed (request line, names, values); past it the parse fails with `overflow`.
    var limit: Int
    private(set) var overflow = false
    private var headBytes = 0
    private var fieldOpen = false

    init(request: Bool, limit: Int, delegate: H1ParserDelegate) {
        self.limit = limit
        self.delegate = delegate
        state = .allocate(capacity: 1)
        c_nio_llhttp_init(state, request ? HTTP_REQUEST : HTTP_RESPONSE, request ? Self.requestSettings : Self.responseSettings)
        state.pointee.data = Unmanaged.passUnretained(self).toOpaque()
    }

    deinit { state.deallocate() }

    /// Parses `count` bytes; after a pause or an error, `taken(from:)` says how many it took.
    func execute(_ data: UnsafeRawPointer, _ count: Int) -> llhttp_errno_t {
        c_nio_llhttp_execute_swift(state, data, count)
    }

    /// Bytes taken by the last `execute` that paused or failed.
    func taken(from data: UnsafeRawPointer) -> Int {
        guard let position = c_nio_llhttp_get_error_pos(state) else { return 0 }
        return UnsafeRawPointer(position) - data
    }

    func resume() { c_nio_llhttp_resume(state) }
    /// The connection ended: completes a message whose end is the end of the connection.
    func finish() -> llhttp_errno_t { c_nio_llhttp_finish(state) }
    /// Back to the start of a message (a pooled connection's next response).
    func reset() {
        c_nio_llhttp_reset(state)
        state.pointee.data = Unmanaged.passUnretained(self).toOpaque()
    }

    var errorReason: String {
        guard let reason = c_nio_llhttp_get_error_reason(state) else { return String(cString: c_nio_llhttp_errno_name(c_nio_llhttp_get_errno(state))) }
        return String(cString: reason)
    }

    var major: UInt8 { state.pointee.http_major }
    var minor: UInt8 { state.pointee.http_minor }
    var methodCode: UInt8 { state.pointee.method }
    var status: Int { Int(state.pointee.status_code) }
    var chunked: Bool { state.pointee.flags & UInt16(F_CHUNKED.rawValue) != 0 }
    var hasContentLength: Bool { state.pointee.flags & UInt16(F_CONTENT_LENGTH.rawValue) != 0 }
    var contentLength: UInt64 { state.pointee.content_length }
    var keepAlive: Bool { c_nio_llhttp_should_keep_alive(state) != 0 }
    /// A response whose end is the end of the connection.
    var needsEOF: Bool { c_nio_llhttp_message_needs_eof(state) != 0 }
    /// The message asks to switch protocols (Upgrade with Connection: upgrade), or is a 101.
    var upgrade: Bool { state.pointee.upgrade != 0 }
    /// Treats an Upgrade request as a plain one.
    func ignoreUpgrade() { state.pointee.upgrade = 0 }

    // MARK: Header helpers

    /// Whether header `f`'s name is `lower` (lowercase ASCII), ignoring case.
    func name(_ f: H1Field, is lower: StaticString) -> Bool {
        equal(f.name, lower)
    }

    func equal(_ range: Range<Int>, _ lower: StaticString) -> Bool {
        guard range.count == lower.utf8CodeUnitCount else { return false }
        let l = lower.utf8Start
        for i in 0..<range.count where bytes[range.lowerBound + i] | 0x20 != l[i] { return false }
        return true
    }

    /// Whether the two ranges hold the same token, ignoring ASCII case.
    func sameToken(_ a: Range<Int>, _ b: Range<Int>) -> Bool {
        guard a.count == b.count else { return false }
        for i in 0..<a.count where bytes[a.lowerBound + i] | 0x20 != bytes[b.lowerBound + i] | 0x20 { return false }
        return true
    }

    /// The comma-separated tokens of a header value (Connection: a, b), trimmed.
    func tokens(_ value: Range<Int>) -> [Range<Int>] {
        var out: [Range<Int>] = []
        var i = value.lowerBound
        while i < value.upperBound {
            while i < value.upperBound, bytes[i] == 32 || bytes[i] == 9 || bytes[i] == 44 { i += 1 }
            let s = i
            while i < value.upperBound, bytes[i] != 44 { i += 1 }
            var e = i
            while e > s, bytes[e - 1] == 32 || bytes[e - 1] == 9 { e -= 1 }
            if e > s { out.append(s..<e) }
        }
        return out
    }

    // MARK: Callbacks

    fileprivate func begin() {
        bytes.removeAll(keepingCapacity: true)
        fields.removeAll(keepingCapacity: true)
        method = 0..<0
        target = 0..<0
        headBytes = 0
        overflow = false
        fieldOpen = false
    }

    /// Appends head bytes; false past `limit`.
    fileprivate func take(_ at: UnsafePointer<CChar>?, _ n: Int) -> Bool {
        headBytes += n + 2
        guard headBytes <= limit else {
            overflow = true
            return false
        }
        if let at, n > 0 {
            at.withMemoryRebound(to: UInt8.self, capacity: n) { bytes.append(contentsOf: UnsafeBufferPointer(start: $0, count: n)) }
        }
        return true
    }

    fileprivate func field(_ at: UnsafePointer<CChar>?, _ n: Int) -> Int32 {
        if !fieldOpen {
            fields.append(H1Field(name: bytes.count..<bytes.count, value: 0..<0))
            fieldOpen = true
        }
        guard take(at, n) else { return -1 }
        fields[fields.count - 1].name = fields[fields.count - 1].name.lowerBound..<bytes.count
        return 0
    }

    /// The name is complete; its value (possibly empty) starts here.
    fileprivate func fieldComplete() {
        fieldOpen = false
        if !fields.isEmpty { fields[fields.count - 1].value = bytes.count..<bytes.count }
    }

    fileprivate func value(_ at: UnsafePointer<CChar>?, _ n: Int) -> Int32 {
        guard !fields.isEmpty else { return 0 }
        guard take(at, n) else { return -1 }
        fields[fields.count - 1].value = fields[fields.count - 1].value.lowerBound..<bytes.count
        return 0
    }

    fileprivate func span(_ range: inout Range<Int>, _ at: UnsafePointer<CChar>?, _ n: Int) -> Int32 {
        let s = range.isEmpty ? bytes.count : range.lowerBound
        guard take(at, n) else { return -1 }
        range = s..<bytes.count
        return 0
    }

    private static func settings(request: Bool) -> llhttp_settings_t {
        var s = llhttp_settings_t()
        c_nio_llhttp_settings_init(&s)
        s.on_message_begin = { p in
            let m = me(p)
            m.begin()
            m.delegate.messageBegin(m)
            return 0
        }
        if request {
            s.on_method = { p, at, n in let m = me(p); return m.span(&m.method, at, n) }
            s.on_url = { p, at, n in let m = me(p); return m.span(&m.target, at, n) }
        } else {
            s.on_status = { p, at, n in let m = me(p); return m.span(&m.target, at, n) }
        }
        s.on_header_field = { p, at, n in me(p).field(at, n) }
        s.on_header_field_complete = { p in me(p).fieldComplete(); return 0 }
        s.on_header_value = { p, at, n in me(p).value(at, n) }
        s.on_headers_complete = { p in let m = me(p); return m.delegate.headComplete(m) }
        s.on_body = { p, at, n in let m = me(p); return m.delegate.body(m, UnsafeRawPointer(at!), n) }
        s.on_message_complete = { p in let m = me(p); return m.delegate.messageComplete(m) }
        return s
    }

    /// llhttp keeps the pointer: allocated once, never freed.
    nonisolated(unsafe) private static let requestSettings = allocate(settings(request: true))
    nonisolated(unsafe) private static let responseSettings = allocate(settings(request: false))

    private static func allocate(_ s: llhttp_settings_t) -> UnsafeMutablePointer<llhttp_settings_t> {
        let p = UnsafeMutablePointer<llhttp_settings_t>.allocate(capacity: 1)
        p.initialize(to: s)
        return p
    }
}

/// The parser a callback is for (llhttp's `data`).
private func me(_ p: UnsafeMutablePointer<llhttp_t>?) -> H1Parser {
    Unmanaged<H1Parser>.fromOpaque(p!.pointee.data!).takeUnretainedValue()
}
