/// One read transfer as the server sees it (RFC 1350, options RFC 2347-2349, windowsize RFC
/// 7440): what to send and when to give up, decided from events alone. No I/O and no clock
/// reads: every event carries the time, and the shell performs the actions (reads block N of
/// the file and sends it, arms the one timer, closes the transfer's socket).
///
/// Blocks are numbered from 1 without end; the wire carries the number modulo 2^16, so a file
/// of more than 65535 blocks rolls over to 0 as tftp-hpa, iPXE and busybox expect.
public struct TFTPTransfer<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration, Instant: Sendable {
    public struct Parameters: Equatable, Sendable {
        public var fileSize: Int
        public var blockSize: Int
        public var windowSize: Int
        /// Whether the request's options are answered with an OACK, which the client
        /// acknowledges with ACK 0 before the first DATA (RFC 2347).
        public var optionAck: Bool
        /// The first wait for an ACK: the negotiated `timeout` (RFC 2349) or the server's own.
        public var timeout: Duration
        /// Back-off doubles the wait up to this; with `retries` it bounds how long a silent
        /// client holds the transfer: at most (retries + 1) × maxTimeout.
        public var maxTimeout: Duration
        /// Retransmissions of one window (or the OACK) before the transfer is given up.
        public var retries: Int
        /// The whole transfer, however steadily it progresses: a client that ACKs one block
        /// just before each timeout cannot hold it for longer.
        public var lifetime: Duration

        public init(fileSize: Int, blockSize: Int, windowSize: Int, optionAck: Bool, timeout: Duration,
                    maxTimeout: Duration, retries: Int, lifetime: Duration) {
            self.fileSize = fileSize
            self.blockSize = blockSize
            self.windowSize = windowSize
            self.optionAck = optionAck
            self.timeout = timeout
            self.maxTimeout = maxTimeout
            self.retries = retries
            self.lifetime = lifetime
        }

        /// The number of the last block: the first shorter than `blockSize`, possibly empty
        /// (RFC 1350 section 6: a file of a multiple of 512 octets ends with an empty DATA).
        public var lastBlock: Int { fileSize / blockSize + 1 }
    }

    public enum Event: Sendable {
        case start(now: Instant)
        case ack(block: UInt16, now: Instant)
        /// The client's ERROR packet (RFC 1350 section 7: it ends the transfer, unanswered).
        case error(code: TFTPErrorCode, message: String)
        /// The timer the last `.scheduleTimeout` asked for fired (late or stale ones are fine).
        case timer(now: Instant)
        /// The shell gave up on the client (its port is unreachable, the socket failed).
        case abort(reason: String)
    }

    public enum Action: Equatable, Sendable {
        case sendOptionAck
        /// DATA for these blocks, in order; the shell reads each from the file.
        case sendBlocks(Range<Int>)
        case sendError(code: TFTPErrorCode, message: String)
        /// Replaces any earlier deadline: the machine has one timer at a time.
        case scheduleTimeout(Instant)
        case finish(Outcome)
    }

    public enum Outcome: Equatable, Sendable {
        case completed
        case failed(Failure)
    }

    public enum Failure: Error, Equatable, Sendable, CustomStringConvertible {
        case noOptionAck(retries: Int)
        case noAck(block: Int, retries: Int)
        case clientError(code: TFTPErrorCode, message: String)
        case lifetimeExceeded(Duration)
        case aborted(String)

        public var description: String {
            switch self {
            case .noOptionAck(let r): "no ACK of the options after \(r) retries"
            case .noAck(let block, let r): "no ACK for block \(block) after \(r) retries"
            case .clientError(let code, let message): "client sent error \(code.rawValue): \(message)"
            case .lifetimeExceeded(let d): "not done within \(d)"
            case .aborted(let why): why
            }
        }
    }

    enum State: Equatable, Sendable {
        case idle
        case awaitingOptionAck
        /// Blocks base..<end are out; base - 1 is the last one the client acknowledged.
        case sending(base: Int, end: Int)
        case finished
    }

    public let parameters: Parameters
    private(set) var state = State.idle
    private var timeout: Duration
    private var tries = 0
    private var deadline: Instant?
    private var expires: Instant?

    public init(_ parameters: Parameters) {
        self.parameters = parameters
        timeout = min(parameters.timeout, parameters.maxTimeout)
    }

    public var isFinished: Bool { state == .finished }

    public mutating func handle(_ event: Event) -> [Action] {
        switch (state, event) {
        case (.idle, .start(let now)):
            expires = now.advanced(by: parameters.lifetime)
            if parameters.optionAck {
                state = .awaitingOptionAck
                return [.sendOptionAck] + arm(now)
            }
            return window(from: 1, now: now)

        case (.awaitingOptionAck, .ack(let block, let now)):
            // RFC 2347: the client acknowledges the OACK with ACK 0; anything else is stray.
            guard block == 0 else { return [] }
            return progressed(now) ?? window(from: 1, now: now)

        case (.sending(let base, let end), .ack(let block, let now)):
            // The window's block this number (mod 2^16) names; 0 is a duplicate of the last
            // ACK, and an older one a stray. RFC 1350's Sorcerer's Apprentice fix (RFC 1123
            // section 4.2.3.1): a duplicate ACK MUST NOT trigger a retransmission; only the
            // timer does.
            let delta = Int(block &- UInt16(truncatingIfNeeded: base - 1))
            guard delta >= 1, delta <= end - base else { return [] }
            if base + delta > parameters.lastBlock {
                state = .finished
                return [.finish(.completed)]
            }
            // RFC 7440 section 4: an ACK inside the window means the blocks after it were
            // lost; the next window starts after the acknowledged block.
            return progressed(now) ?? window(from: base + delta, now: now)

        case (.awaitingOptionAck, .timer(let now)), (.sending, .timer(let now)):
            guard let deadline, now >= deadline else { return [] }  // stale: rearmed since
            if let expired = expiry(now) { return expired }
            tries += 1
            guard tries <= parameters.retries else {
                let failure: Failure
                if case .sending(let base, _) = state { failure = .noAck(block: base, retries: parameters.retries) } else {
                    failure = .noOptionAck(retries: parameters.retries)
                }
                state = .finished
                return [.finish(.failed(failure))]
            }
            timeout = min(timeout * 2, parameters.maxTimeout)
            switch state {
            case .awaitingOptionAck: return [.sendOptionAck] + arm(now)
            case .sending(let base, let end): return [.sendBlocks(base..<end)] + arm(now)
            default: return []
            }

        case (.awaitingOptionAck, .error(let code, let message)), (.sending, .error(let code, let message)):
            state = .finished
            return [.finish(.failed(.clientError(code: code, message: message)))]

        case (.idle, .abort(let why)), (.awaitingOptionAck, .abort(let why)), (.sending, .abort(let why)):
            state = .finished
            return [.finish(.failed(.aborted(why)))]

        default:
            return []
        }
    }

    /// Progress resets the back-off (the client is there); past the lifetime it ends instead.
    private mutating func progressed(_ now: Instant) -> [Action]? {
        if let expired = expiry(now) { return expired }
        tries = 0
        timeout = min(parameters.timeout, parameters.maxTimeout)
        return nil
    }

    private mutating func expiry(_ now: Instant) -> [Action]? {
        guard let expires, now >= expires else { return nil }
        state = .finished
        return [.sendError(code: .notDefined, message: "transfer took too long"),
                .finish(.failed(.lifetimeExceeded(parameters.lifetime)))]
    }

    private mutating func window(from base: Int, now: Instant) -> [Action] {
        let end = min(base + parameters.windowSize, parameters.lastBlock + 1)
        state = .sending(base: base, end: end)
        return [.sendBlocks(base..<end)] + arm(now)
    }

    private mutating func arm(_ now: Instant) -> [Action] {
        let d = now.advanced(by: timeout)
        deadline = d
        return [.scheduleTimeout(d)]
    }
}
