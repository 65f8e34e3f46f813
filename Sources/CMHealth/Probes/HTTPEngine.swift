import CCurl
import CMTypes
import Foundation
import Synchronization

/// One GET, for an HTTP(S) check or a metrics scrape.
public struct HTTPProbeRequest: Sendable, Equatable {
    public var url: String
    /// Sent as the Host header instead of the URL's host (name-based virtual hosts reached
    /// by address). TLS still sends the URL's host as SNI.
    public var host: String?
    /// For the whole exchange: connect, TLS, request, response, body.
    public var timeout: Duration
    public var tlsVerify: Bool
    /// The body is kept up to this many bytes; a longer one is cut there, the transfer
    /// stopped (which costs the kept-alive connection) and the response marked truncated.
    public var maxBodyBytes: Int

    /// Enough for any health page; more is neither read nor kept.
    public static let defaultMaxBodyBytes = 64 << 10
    /// node-exporter on a big host answers with 0.5–2 MiB of text.
    public static let scrapeMaxBodyBytes = 8 << 20

    public init(url: String, host: String? = nil, timeout: Duration, tlsVerify: Bool = true,
                maxBodyBytes: Int = HTTPProbeRequest.defaultMaxBodyBytes) {
        self.url = url
        self.host = host
        self.timeout = timeout
        self.tlsVerify = tlsVerify
        self.maxBodyBytes = max(0, maxBodyBytes)
    }
}

public struct HTTPProbeResponse: Sendable, Equatable {
    /// The HTTP status; nil when no response arrived, and then `error` says why.
    public var status: Int?
    /// One line: "timeout after 1s", "connect: Connection refused", or libcurl's text
    /// ("SSL certificate problem: self-signed certificate").
    public var error: String?
    public var body: [UInt8]
    /// The body was longer than the request's `maxBodyBytes`.
    public var truncated: Bool
    /// From the start of the transfer to its end, as libcurl measured it.
    public var totalTime: Duration

    public init(status: Int?, error: String?, body: [UInt8], truncated: Bool, totalTime: Duration) {
        self.status = status
        self.error = error
        self.body = body
        self.truncated = truncated
        self.totalTime = totalTime
    }

    static func failure(_ why: String, after time: Duration = .zero) -> HTTPProbeResponse {
        HTTPProbeResponse(status: nil, error: why, body: [], truncated: false, totalTime: time)
    }
}

public struct HTTPEngineError: Error, CustomStringConvertible {
    public var description: String
}

/// HTTP(S) for checks and metric scrapes: libcurl's multi interface driven by one thread,
/// so a thousand requests in flight cost a thousand sockets, not a thousand threads.
///
/// Requests are handed over through a locked queue and the thread is woken with
/// curl_multi_wakeup; it calls each caller's completion when the transfer ends.
/// Connections stay in the multi handle's cache and are reused by the next request to the
/// same host and port, so a check every second to a node costs one connect per keep-alive
/// period, not one per probe. Easy handles are pooled for the same reason.
///
/// URLs should name addresses: a host name would be resolved by libcurl's resolver, which
/// (threaded resolver) costs a short-lived thread per lookup.
///
/// A caller's task being cancelled does not stop its transfer; the timeout bounds it.
public final class HTTPEngine: Sendable {
    private let core: Core

    /// - Parameters:
    ///   - maxConnections: idle connections kept for reuse (CURLMOPT_MAXCONNECTS): one per
    ///     target (address and port) checked or scraped. Fewer than the targets and every
    ///     request evicts one and connects anew (bench-healthd with 5,000 HTTP targets against
    ///     4,096). 16,384 covers the design's 10,000 checks per master plus its nodes' scrapes.
    ///   - maxInFlight: requests accepted at once; beyond it `get` fails at once, so a
    ///     stalled network cannot grow memory without bound.
    public init(maxConnections: Int = 16384, maxInFlight: Int = 16384, userAgent: String = "cm-healthd") throws(HTTPEngineError) {
        let rc = Self.globalInit
        guard rc == CURLE_OK else {
            throw HTTPEngineError(description: "curl_global_init: \(String(cString: curl_easy_strerror(rc)))")
        }
        guard let multi = curl_multi_init() else { throw HTTPEngineError(description: "curl_multi_init failed (out of memory)") }
        _ = cm_curl_multi_setopt_long(multi, CURLMOPT_MAXCONNECTS, max(1, maxConnections))
        core = Core(multi: MultiHandle(pointer: multi), maxInFlight: max(1, maxInFlight), userAgent: userAgent)
        let core = core
        startThread(named: "cm-http") { core.run() }
    }

    deinit { core.shutdown() }

    /// curl_global_init is not thread-safe and must run once before anything else in
    /// libcurl: a lazily initialised static gives exactly that.
    private static let globalInit: CURLcode = curl_global_init(Int(CURL_GLOBAL_DEFAULT))

    /// Performs one GET. Never throws: every failure is a response with `error` set.
    public func get(_ request: HTTPProbeRequest) async -> HTTPProbeResponse {
        await withCheckedContinuation { continuation in
            submit(request) { continuation.resume(returning: $0) }
        }
    }

    /// Starts one GET; `done` is called exactly once, on the engine's thread (or the
    /// caller's, when the request is refused at once). The probe loop's way in: no task.
    public func submit(_ request: HTTPProbeRequest, done: @escaping @Sendable (HTTPProbeResponse) -> Void) {
        core.submit(Submission(request: request, done: done))
    }

    /// Stops the thread; requests in flight or submitted later get "shutting down".
    /// Does not wait for the thread to finish.
    public func shutdown() { core.shutdown() }
}

extension HTTPEngine {
    struct Submission: Sendable {
        let request: HTTPProbeRequest
        let done: @Sendable (HTTPProbeResponse) -> Void
    }

    /// libcurl's multi handle. The worker thread alone uses it, except for
    /// curl_multi_wakeup, which libcurl documents as callable from any thread; cleanup
    /// waits for `Core.deinit`, when no thread can call anything on it any more. That is
    /// why this wrapper may be Sendable.
    struct MultiHandle: @unchecked Sendable {
        let pointer: UnsafeMutableRawPointer
    }

    struct Queue {
        var submitted: [Submission] = []
        /// Submitted and not yet completed.
        var inFlight = 0
        var stopping = false
    }

    /// What the engine shares with its thread. The thread holds the core, not the engine,
    /// so that dropping the last HTTPEngine reference shuts it down.
    final class Core: Sendable {
        let multi: MultiHandle
        let maxInFlight: Int
        let userAgent: String
        let queue = Mutex(Queue())

        init(multi: MultiHandle, maxInFlight: Int, userAgent: String) {
            self.multi = multi
            self.maxInFlight = maxInFlight
            self.userAgent = userAgent
        }

        deinit { curl_multi_cleanup(multi.pointer) }

        enum Admission { case queuedFirst, queued, refused(String) }

        func submit(_ s: Submission) {
            let admission: Admission = queue.withLock { q in
                if q.stopping { return .refused("shutting down") }
                if q.inFlight >= maxInFlight { return .refused("too many HTTP requests in flight (\(maxInFlight))") }
                q.inFlight += 1
                q.submitted.append(s)
                return q.submitted.count == 1 ? .queuedFirst : .queued
            }
            switch admission {
            case .queuedFirst: curl_multi_wakeup(multi.pointer)
            case .queued: break  // the worker drains the whole queue on the wake-up already sent
            case .refused(let why): s.done(.failure(why))
            }
        }

        func shutdown() {
            let first = queue.withLock { q in
                defer { q.stopping = true }
                return !q.stopping
            }
            if first { curl_multi_wakeup(multi.pointer) }
        }

        // MARK: The worker thread

        /// Runs until `stopping`; every non-Sendable object below lives on this thread only.
        func run() {
            let multi = self.multi.pointer
            var active: [UnsafeMutableRawPointer: Transfer] = [:]
            var idle: [Transfer] = []
            var batch: [Submission] = []
            var completed = 0
            while true {
                let stopping = queue.withLock { q in
                    q.inFlight -= completed
                    swap(&q.submitted, &batch)
                    return q.stopping
                }
                completed = 0
                if stopping {
                    for s in batch { s.done(.failure("shutting down")) }
                    for (easy, t) in active {
                        curl_multi_remove_handle(multi, easy)
                        t.finish(.failure("shutting down"))
                        t.close()
                    }
                    for t in idle { t.close() }
                    return
                }
                for s in batch {
                    guard let t = idle.popLast() ?? Transfer() else {
                        s.done(.failure("curl_easy_init failed"))
                        completed += 1
                        continue
                    }
                    if let problem = t.start(s, userAgent: userAgent) {
                        t.finish(.failure(problem))
                        completed += 1
                        idle.append(t)
                        continue
                    }
                    let rc = curl_multi_add_handle(multi, t.easy)
                    guard rc == CURLM_OK else {
                        t.finish(.failure("curl_multi_add_handle: \(String(cString: curl_multi_strerror(rc)))"))
                        completed += 1
                        idle.append(t)
                        continue
                    }
                    active[t.easy] = t
                }
                batch.removeAll(keepingCapacity: true)

                var running: Int32 = 0
                curl_multi_perform(multi, &running)
                var left: Int32 = 0
                while let message = curl_multi_info_read(multi, &left) {
                    guard message.pointee.msg == CURLMSG_DONE, let easy = message.pointee.easy_handle,
                          let t = active.removeValue(forKey: easy) else { continue }
                    let code = message.pointee.data.result
                    curl_multi_remove_handle(multi, easy)
                    t.finish(t.response(code))
                    completed += 1
                    // Pooling easy handles saves their allocation; the connections themselves
                    // live in the multi handle's cache either way.
                    if idle.count < 1024 { idle.append(t) } else { t.close() }
                }
                // Waits for socket activity, libcurl's next timer, a wake-up, or one second.
                curl_multi_poll(multi, nil, 0, 1000, nil)
            }
        }
    }

    /// One easy handle and the state of the transfer it carries. Worker thread only.
    final class Transfer {
        let easy: UnsafeMutableRawPointer
        /// CURLOPT_ERRORBUFFER: libcurl's detailed text for the last failure.
        let errorBuffer: UnsafeMutablePointer<CChar>
        var submission: Submission?
        var body: [UInt8] = []
        var truncated = false
        var headers: UnsafeMutablePointer<curl_slist>?

        init?() {
            guard let easy = curl_easy_init() else { return nil }
            self.easy = easy
            errorBuffer = .allocate(capacity: Int(CURL_ERROR_SIZE))
        }

        /// Sets every option for this request; returns what is wrong if libcurl refuses one.
        func start(_ s: Submission, userAgent: String) -> String? {
            curl_easy_reset(easy)
            submission = s
            body = []
            truncated = false
            errorBuffer[0] = 0
            let r = s.request
            let ms = max(1, Int(clamping: r.timeout.milliseconds))
            var rc = CURLE_OK
            func set(_ option: CURLoption, _ value: Int) { if rc == CURLE_OK { rc = cm_curl_setopt_long(easy, option, value) } }
            func set(_ option: CURLoption, _ value: String) {
                if rc == CURLE_OK { rc = value.withCString { cm_curl_setopt_ptr(easy, option, $0) } }  // libcurl copies strings
            }
            func set(_ option: CURLoption, _ value: UnsafeRawPointer?) { if rc == CURLE_OK { rc = cm_curl_setopt_ptr(easy, option, value) } }
            set(CURLOPT_URL, r.url)
            // Only http and https: a check URL must not read file:// or talk gopher.
            set(CURLOPT_PROTOCOLS_STR, "http,https")
            // NIO and the daemon own the process's signals; libcurl must not touch them.
            set(CURLOPT_NOSIGNAL, 1)
            set(CURLOPT_TCP_NODELAY, 1)
            // A probe measures the node, never a proxy from the environment.
            set(CURLOPT_NOPROXY, "*")
            // A redirect is an answer (3xx); following it would probe another URL.
            set(CURLOPT_FOLLOWLOCATION, 0)
            set(CURLOPT_FORBID_REUSE, 0)
            set(CURLOPT_TIMEOUT_MS, ms)
            set(CURLOPT_CONNECTTIMEOUT_MS, ms)
            set(CURLOPT_SSL_VERIFYPEER, r.tlsVerify ? 1 : 0)
            set(CURLOPT_SSL_VERIFYHOST, r.tlsVerify ? 2 : 0)
            set(CURLOPT_USERAGENT, userAgent)
            set(CURLOPT_ERRORBUFFER, UnsafeRawPointer(errorBuffer))
            if let host = r.host {
                // A header from config must not smuggle a second header line.
                guard !host.utf8.contains(where: { $0 < 0x20 || $0 == 0x7f }) else { return "Host header contains a control character" }
                headers = curl_slist_append(nil, "Host: \(host)")
                guard headers != nil else { return "out of memory" }
                set(CURLOPT_HTTPHEADER, UnsafeRawPointer(headers))
            }
            // The transfer outlives this call in `active`, which keeps it alive: unretained.
            set(CURLOPT_WRITEDATA, UnsafeRawPointer(Unmanaged.passUnretained(self).toOpaque()))
            set(CURLOPT_WRITEFUNCTION, unsafeBitCast(Transfer.write, to: UnsafeRawPointer.self))
            guard rc == CURLE_OK else { return "curl_easy_setopt: \(String(cString: curl_easy_strerror(rc)))" }
            return nil
        }

        /// Keeps the body up to the limit; past it, stops the transfer (returning a short
        /// count makes libcurl fail it with CURLE_WRITE_ERROR, see `response`).
        static let write: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = { data, size, count, user in
            let n = size * count
            guard let data, let user else { return 0 }
            let t = Unmanaged<Transfer>.fromOpaque(user).takeUnretainedValue()
            let limit = t.submission?.request.maxBodyBytes ?? 0
            let take = min(n, max(0, limit - t.body.count))
            data.withMemoryRebound(to: UInt8.self, capacity: n) { t.body.append(contentsOf: UnsafeBufferPointer(start: $0, count: take)) }
            if take < n {
                t.truncated = true
                return 0
            }
            return n
        }

        func response(_ code: CURLcode) -> HTTPProbeResponse {
            var seconds = 0.0
            _ = cm_curl_getinfo_double(easy, CURLINFO_TOTAL_TIME, &seconds)
            let time = Duration.microseconds(Int64(max(0, seconds) * 1e6))
            var status = 0
            _ = cm_curl_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &status)
            // A body cut at the limit is a complete answer for a probe.
            if code == CURLE_OK || (code == CURLE_WRITE_ERROR && truncated && status > 0) {
                return HTTPProbeResponse(status: status, error: nil, body: body, truncated: truncated, totalTime: time)
            }
            return .failure(errorText(code), after: time)
        }

        func errorText(_ code: CURLcode) -> String {
            switch code {
            case CURLE_OPERATION_TIMEDOUT:
                return timeoutText(submission?.request.timeout ?? .zero)
            case CURLE_COULDNT_CONNECT:
                // libcurl's own text ("Couldn't connect to server") hides the reason;
                // the connect(2) errno says refused, unreachable, ….
                var osErrno = 0
                _ = cm_curl_getinfo_long(easy, CURLINFO_OS_ERRNO, &osErrno)
                if osErrno != 0, let text = strerror(Int32(clamping: osErrno)) { return "connect: \(String(cString: text))" }
                return "connect: \(String(cString: curl_easy_strerror(code)))"
            default:
                let detail = String(cString: errorBuffer)
                return detail.isEmpty ? String(cString: curl_easy_strerror(code)) : detail
            }
        }

        /// Resumes the caller exactly once and drops what belonged to the request.
        func finish(_ response: HTTPProbeResponse) {
            submission?.done(response)
            submission = nil
            curl_slist_free_all(headers)
            headers = nil
            body = []  // the response owns it now
        }

        func close() {
            curl_easy_cleanup(easy)
            errorBuffer.deallocate()
        }
    }
}
