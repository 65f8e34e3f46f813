import CMConfig
import CMTypes
import NIOCore
import NIOHTTP1

/// One HTTP boot connection's life, as a pure state machine: the handler feeds it what
/// happened and performs the actions it answers. It serves one request at a time: the next
/// pipelined request waits here, and no more bytes are read, until the previous response has
/// been sent, not merely queued; otherwise a client that pipelines requests and never reads
/// makes the server open one file per request. Time comes in with the events (no clock
/// inside), so tests drive it without sockets or waiting.
struct HTTPConnectionMachine {
    struct Timeouts: Equatable {
        var head: TimeAmount
        var idle: TimeAmount
        var send: TimeAmount

        init(head: TimeAmount, idle: TimeAmount, send: TimeAmount) {
            self.head = head
            self.idle = idle
            self.send = send
        }

        init(_ limits: PxedConfig.HTTPLimits) {
            self.init(head: TimeAmount(limits.headerTimeout), idle: TimeAmount(limits.idleTimeout), send: TimeAmount(limits.sendTimeout))
        }
    }

    /// Which limit a connection overran; the names are those of the pxed.toml keys' words.
    enum Timeout: String, Equatable {
        case head = "request head"
        case idle = "idle keep-alive"
        case send = "send"
    }

    enum Event {
        /// Bytes arrived from the client (before they are parsed).
        case bytesReceived(NIODeadline)
        case requestHead(HTTPRequestHead)
        case requestEnd(NIODeadline)
        /// A part of the response left for the client.
        case responseProgress(NIODeadline)
        /// The whole response was sent (or failed to be: the channel is closing then).
        case responseSent(NIODeadline, keepAlive: Bool)
        case timer(NIODeadline)
        /// The pipeline asks for more bytes.
        case read
    }

    enum Action: Equatable {
        case serve(HTTPRequestHead)
        /// Arm the one timer for this deadline, replacing one armed before.
        case scheduleTimer(NIODeadline)
        case read
        /// nil: the response asked for it (no keep-alive); otherwise the timeout that expired.
        case close(Timeout?)
    }

    private enum Phase {
        /// No request started: the deadline is the idle or the head timeout's.
        case waiting(deadline: NIODeadline, kind: Timeout)
        /// A head is in, its end (after any body) not yet.
        case receiving(HTTPRequestHead, deadline: NIODeadline)
        case serving(lastProgress: NIODeadline)
        case closed
    }

    let timeouts: Timeouts
    private var phase: Phase
    /// The request pipelined behind the one being served; at most one, because reading stops.
    private var next: (head: HTTPRequestHead, complete: Bool)?
    private var readWithheld = false
    /// Bytes of a further request came in while serving: its head timeout, not the idle
    /// timeout, runs once the response is sent.
    private var bytesWhileServing = false
    /// The deadline of the armed timer, if any.
    private var timerAt: NIODeadline?

    /// The connection was accepted at `now`: the first head must be in within the head timeout.
    init(timeouts: Timeouts, now: NIODeadline) {
        self.timeouts = timeouts
        phase = .waiting(deadline: now + timeouts.head, kind: .head)
    }

    /// The timer to arm when the connection starts.
    mutating func start() -> [Action] { armTimer() }

    var isClosed: Bool { if case .closed = phase { true } else { false } }

    mutating func handle(_ event: Event) -> [Action] {
        var actions: [Action] = []
        switch (phase, event) {
        case (.closed, _):
            return []

        case (.waiting(_, .idle), .bytesReceived(let now)):
            phase = .waiting(deadline: now + timeouts.head, kind: .head)
        case (.serving, .bytesReceived):
            bytesWhileServing = true
        case (_, .bytesReceived):
            break

        case (.waiting(let deadline, _), .requestHead(let head)):
            phase = .receiving(head, deadline: deadline)
        case (.serving, .requestHead(let head)):
            next = (head, false)
        case (_, .requestHead):
            break  // the decoder delivers head, body, end in order: not reached

        case (.receiving(let head, _), .requestEnd(let now)):
            phase = .serving(lastProgress: now)
            actions.append(.serve(head))
        case (.serving, .requestEnd):
            if let n = next { next = (n.head, true) }
        case (_, .requestEnd):
            break

        case (.serving, .responseProgress(let now)):
            phase = .serving(lastProgress: now)

        case (.serving, .responseSent(let now, let keepAlive)):
            guard keepAlive else {
                phase = .closed
                return [.close(nil)]
            }
            if let n = next, n.complete {
                next = nil
                phase = .serving(lastProgress: now)
                actions.append(.serve(n.head))
            } else if let n = next {
                next = nil
                phase = .receiving(n.head, deadline: now + timeouts.head)
            } else {
                phase = bytesWhileServing ? .waiting(deadline: now + timeouts.head, kind: .head)
                    : .waiting(deadline: now + timeouts.idle, kind: .idle)
            }
            bytesWhileServing = false
            if readWithheld, !isServing {
                readWithheld = false
                actions.append(.read)
            }
        case (_, .responseProgress), (_, .responseSent):
            break

        case (_, .timer(let now)):
            timerAt = nil
            if case let (d, kind)? = deadline, now >= d {
                phase = .closed
                return [.close(kind)]
            }

        case (_, .read):
            if isServing || next != nil {
                readWithheld = true
            } else {
                actions.append(.read)
            }
        }
        return actions + armTimer()
    }

    private var isServing: Bool { if case .serving = phase { true } else { false } }

    /// When the connection must have made progress by, and which timeout that is.
    private var deadline: (NIODeadline, Timeout)? {
        switch phase {
        case .waiting(let d, let kind): (d, kind)
        case .receiving(_, let d): (d, .head)
        case .serving(let last): (last + timeouts.send, .send)
        case .closed: nil
        }
    }

    /// One timer at most: armed anew when none is, or when the deadline moved earlier. A
    /// deadline that moved later (progress) is found when the earlier timer fires.
    private mutating func armTimer() -> [Action] {
        guard let d = deadline?.0 else { return [] }
        if let t = timerAt, t <= d { return [] }
        timerAt = d
        return [.scheduleTimer(d)]
    }
}
