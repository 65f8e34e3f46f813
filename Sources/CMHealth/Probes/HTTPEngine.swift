import CCurl
import CMTypes
import Foundation
import Synchronization

public struct HTTPProbeRequest: Sendable {
    public var url: String
    public var host: String?
    public var timeout: Duration
    public var tlsVerify: Bool
    /// The body is kept up to this many bytes; beyond that it is read and dropped (so the
    /// connection can be reused) and the response is marked truncated.
    public var maxBodyBytes: Int

    public init(url: String, host: String? = nil, timeout: Duration, tlsVerify: Bool = true, maxBodyBytes: Int = 64 << 10) {
        self.url = url
        self.host = host
        self.timeout = timeout
        self.tlsVerify = tlsVerify
        self.maxBodyBytes = maxBodyBytes
    }
}

public struct HTTPProbeResponse: Sendable {
    /// nil when no HTTP response arrived (then `error` says why).
    public var status: Int?
    public var body: [UInt8]
    public var truncated: Bool
    public var error: String?
    public var totalTime: Duration
}

/// HTTP(S) for probes and metric scrapes: libcurl's multi interface on one thread, so a
/// thousand requests in flight cost a thousand sockets, not a thousand threads. Connections
/// are kept alive in the multi handle's cache and reused by the next probe of the same node.
public final class HTTPEngine: Sendable {
    /// Per-transfer state. Handed over to the worker thread once submitted and touched only
    /// there afterwards: that hand-over through the locked queue is what makes it Sendable.
    final class Transfer: @unchecked Sendable {
        let request: HTTPProbeRequest
        let continuation: CheckedContinuation<HTTPProbeResponse, Never>
        var body: [UInt8] = []
        var truncated = false
        var headers: UnsafeMutablePointer<curl_slist>?

        init(request: HTTPProbeRequest, continuation: CheckedContinuation<HTTPProbeResponse, Never>) {
            self.request = request
            self.continuation = continuation
        }
    }

    struct Shared {
        var submitted: [Transfer] = []
        var stopping = false
    }

    /// The multi handle: used by the worker thread only, except curl_multi_wakeup, which
    /// libcurl documents as callable from any thread.
    struct Handle: @unchecked Sendable { let multi: UnsafeMutableRawPointer }

    private let shared = Mutex(Shared())
    private let handle: Handle

    public init(maxConnections: Int = 8192) {
        Self.globalInit
        // curl_multi_init fails only when out of memory, before the daemon could do anything.
        guard let multi = curl_multi_init() else { fatalError("curl_multi_init failed: out of memory") }
        handle = Handle(multi: multi)
        _ = cm_curl_multi_setopt_long(handle.multi, CURLMOPT_MAXCONNECTS, maxConnections)
        // The thread keeps the engine alive until shutdown() ends its loop.
        let thread = Thread { [self] in work() }
        thread.name = "cm-http"
        thread.start()
    }

    private static let globalInit: Void = { curl_global_init(Int(CURL_GLOBAL_DEFAULT)) }()

    public func get(_ request: HTTPProbeRequest) async -> HTTPProbeResponse {
        await withCheckedContinuation { continuation in
            let transfer = Transfer(request: request, continuation: continuation)
            let accepted = shared.withLock { s -> Bool in
                guard !s.stopping else { return false }
                s.submitted.append(transfer)
                return true
            }
            if accepted {
                curl_multi_wakeup(handle.multi)
            } else {
                continuation.resume(returning: HTTPProbeResponse(status: nil, body: [], truncated: false, error: "shutting down", totalTime: .zero))
            }
        }
    }

    /// Fails whatever is in flight and stops the thread.
    public func shutdown() {
        shared.withLock { $0.stopping = true }
        curl_multi_wakeup(handle.multi)
    }

    // MARK: Worker thread

    private static let writeCallback: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = { data, size, count, user in
        let n = size * count
        guard let data, let user else { return n }
        let transfer = Unmanaged<Transfer>.fromOpaque(user).takeUnretainedValue()
        let room = transfer.request.maxBodyBytes - transfer.body.count
        if room > 0 {
            let take = min(room, n)
            data.withMemoryRebound(to: UInt8.self, capacity: take) { transfer.body.append(contentsOf: UnsafeBufferPointer(start: $0, count: take)) }
        }
        if n > room { transfer.truncated = true }
        return n
    }

    private func work() {
        let multi = handle.multi
        var active: [UnsafeMutableRawPointer: Transfer] = [:]
        var idle: [UnsafeMutableRawPointer] = []
        while true {
            let (incoming, stopping) = shared.withLock { s -> ([Transfer], Bool) in
                defer { s.submitted.removeAll(keepingCapacity: true) }
                return (s.submitted, s.stopping)
            }
            if stopping {
                for t in incoming { t.continuation.resume(returning: Self.failure("shutting down", t)) }
                for (easy, t) in active {
                    curl_multi_remove_handle(multi, easy)
                    t.continuation.resume(returning: Self.failure("shutting down", t))
                    curl_slist_free_all(t.headers)
                    Unmanaged.passUnretained(t).release()
                    curl_easy_cleanup(easy)
                }
                for easy in idle { curl_easy_cleanup(easy) }
                curl_multi_cleanup(multi)
                return
            }
            for t in incoming {
                guard let easy = idle.popLast() ?? curl_easy_init() else {
                    t.continuation.resume(returning: Self.failure("curl_easy_init failed", t))
                    continue
                }
                Self.configure(easy, t)
                active[easy] = t
                curl_multi_add_handle(multi, easy)
            }
            var running: Int32 = 0
            curl_multi_perform(multi, &running)
            var queued: Int32 = 0
            while let message = curl_multi_info_read(multi, &queued) {
                guard message.pointee.msg == CURLMSG_DONE, let easy = message.pointee.easy_handle, let t = active.removeValue(forKey: easy) else { continue }
                let code = message.pointee.data.result
                curl_multi_remove_handle(multi, easy)
                t.continuation.resume(returning: Self.response(easy, t, code))
                curl_slist_free_all(t.headers)
                Unmanaged.passUnretained(t).release()
                curl_easy_reset(easy)
                idle.append(easy)
            }
            curl_multi_poll(multi, nil, 0, 1000, nil)
        }
    }

    private static func configure(_ easy: UnsafeMutableRawPointer, _ t: Transfer) {
        let r = t.request
        _ = cm_curl_setopt_ptr(easy, CURLOPT_URL, r.url)
        _ = cm_curl_setopt_long(easy, CURLOPT_NOSIGNAL, 1)
        _ = cm_curl_setopt_long(easy, CURLOPT_TCP_NODELAY, 1)
        _ = cm_curl_setopt_long(easy, CURLOPT_FOLLOWLOCATION, 0)
        _ = cm_curl_setopt_ptr(easy, CURLOPT_NOPROXY, "*")
        _ = cm_curl_setopt_ptr(easy, CURLOPT_USERAGENT, "cm-healthd")
        let ms = max(1, Int(r.timeout.milliseconds))
        _ = cm_curl_setopt_long(easy, CURLOPT_TIMEOUT_MS, ms)
        _ = cm_curl_setopt_long(easy, CURLOPT_CONNECTTIMEOUT_MS, ms)
        _ = cm_curl_setopt_long(easy, CURLOPT_SSL_VERIFYPEER, r.tlsVerify ? 1 : 0)
        _ = cm_curl_setopt_long(easy, CURLOPT_SSL_VERIFYHOST, r.tlsVerify ? 2 : 0)
        if let host = r.host {
            t.headers = curl_slist_append(nil, "Host: \(host)")
            _ = cm_curl_setopt_ptr(easy, CURLOPT_HTTPHEADER, t.headers)
        }
        let user = Unmanaged.passRetained(t).toOpaque()  // released when the transfer ends
        _ = cm_curl_setopt_ptr(easy, CURLOPT_WRITEDATA, user)
        _ = cm_curl_setopt_ptr(easy, CURLOPT_WRITEFUNCTION, unsafeBitCast(writeCallback, to: UnsafeRawPointer.self))
    }

    private static func response(_ easy: UnsafeMutableRawPointer, _ t: Transfer, _ code: CURLcode) -> HTTPProbeResponse {
        var seconds = 0.0
        _ = cm_curl_getinfo_double(easy, CURLINFO_TOTAL_TIME, &seconds)
        let time = Duration.microseconds(Int64(seconds * 1e6))
        guard code == CURLE_OK else {
            let text: String
            var osErrno = 0
            _ = cm_curl_getinfo_long(easy, CURLINFO_OS_ERRNO, &osErrno)
            if code == CURLE_OPERATION_TIMEDOUT {
                text = "timeout after \(DurationText.format(t.request.timeout))"
            } else if code == CURLE_COULDNT_CONNECT, osErrno != 0 {
                // Say why, as the TCP probe does: "connect: Connection refused".
                text = "connect: \(String(cString: strerror(Int32(osErrno))))"
            } else {
                text = String(cString: curl_easy_strerror(code))
            }
            return HTTPProbeResponse(status: nil, body: [], truncated: false, error: text, totalTime: time)
        }
        var status = 0
        _ = cm_curl_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &status)
        return HTTPProbeResponse(status: status, body: t.body, truncated: t.truncated, error: nil, totalTime: time)
    }

    private static func failure(_ why: String, _ t: Transfer) -> HTTPProbeResponse {
        HTTPProbeResponse(status: nil, body: [], truncated: false, error: why, totalTime: .zero)
    }
}
