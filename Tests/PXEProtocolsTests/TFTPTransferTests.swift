import PXEProtocols
import Testing

/// Time as the tests say it is: seconds since the transfer started.
struct T: InstantProtocol {
    var since: Duration
    init(_ seconds: Double) { since = .milliseconds(Int64(seconds * 1000)) }
    init(since: Duration) { self.since = since }
    func advanced(by d: Duration) -> T { T(since: since + d) }
    func duration(to other: T) -> Duration { other.since - since }
    static func < (a: T, b: T) -> Bool { a.since < b.since }
}

@Suite struct TFTPTransferTests {
    typealias Transfer = TFTPTransfer<T>

    static func params(size: Int, block: Int = 512, window: Int = 1, oack: Bool = false, timeout: Int = 1,
                       retries: Int = 3, lifetime: Int = 600) -> Transfer.Parameters {
        .init(fileSize: size, blockSize: block, windowSize: window, optionAck: oack, timeout: .seconds(timeout),
              maxTimeout: .seconds(5), retries: retries, lifetime: .seconds(lifetime))
    }

    @Test func plainTransferEndsOnTheLastAck() {
        // 1,024 octets in 512-octet blocks: two full blocks and the empty third (RFC 1350 section 6).
        var t = Transfer(Self.params(size: 1024))
        #expect(t.handle(.start(now: T(0))) == [.sendBlocks(1..<2), .scheduleTimeout(T(1))])
        #expect(t.handle(.ack(block: 1, now: T(0.1))) == [.sendBlocks(2..<3), .scheduleTimeout(T(1.1))])
        #expect(t.handle(.ack(block: 2, now: T(0.2))) == [.sendBlocks(3..<4), .scheduleTimeout(T(1.2))])
        #expect(t.handle(.ack(block: 3, now: T(0.3))) == [.finish(.completed)])
        #expect(t.isFinished)
        #expect(t.handle(.timer(now: T(1.3))) == [])
    }

    @Test func optionsAreAcknowledgedBeforeData() {
        var t = Transfer(Self.params(size: 100, block: 1468, oack: true))
        #expect(t.handle(.start(now: T(0))) == [.sendOptionAck, .scheduleTimeout(T(1))])
        #expect(t.handle(.ack(block: 1, now: T(0.1))) == [])  // stray: only ACK 0 answers an OACK
        #expect(t.handle(.ack(block: 0, now: T(0.2))) == [.sendBlocks(1..<2), .scheduleTimeout(T(1.2))])
        #expect(t.handle(.ack(block: 1, now: T(0.3))) == [.finish(.completed)])
    }

    @Test func lostAckIsRetransmittedWithBackOffUpToTheCap() {
        var t = Transfer(Self.params(size: 2000, retries: 5))
        _ = t.handle(.start(now: T(0)))
        #expect(t.handle(.timer(now: T(0.5))) == [])  // early (stale) timer: nothing
        #expect(t.handle(.timer(now: T(1))) == [.sendBlocks(1..<2), .scheduleTimeout(T(3))])
        #expect(t.handle(.timer(now: T(3))) == [.sendBlocks(1..<2), .scheduleTimeout(T(7))])
        #expect(t.handle(.timer(now: T(7))) == [.sendBlocks(1..<2), .scheduleTimeout(T(12))])  // 8 s capped to 5
        #expect(t.handle(.timer(now: T(12))) == [.sendBlocks(1..<2), .scheduleTimeout(T(17))])
        // Progress resets the back-off.
        #expect(t.handle(.ack(block: 1, now: T(13))) == [.sendBlocks(2..<3), .scheduleTimeout(T(14))])
    }

    @Test func duplicateAckIsNotAnsweredSorcerersApprentice() {
        var t = Transfer(Self.params(size: 5000))
        _ = t.handle(.start(now: T(0)))
        _ = t.handle(.ack(block: 1, now: T(0.1)))
        // A delayed duplicate of ACK 1 while block 2 is out: no resend, no new timer.
        #expect(t.handle(.ack(block: 1, now: T(0.2))) == [])
        #expect(t.handle(.ack(block: 0, now: T(0.2))) == [])
        #expect(t.handle(.ack(block: 2, now: T(0.3))) == [.sendBlocks(3..<4), .scheduleTimeout(T(1.3))])
    }

    @Test func windowIsResentFromTheBlockAfterTheLastInOrder() {
        // RFC 7440: 10 blocks of 8 octets and the empty 11th, window 4.
        var t = Transfer(Self.params(size: 80, block: 8, window: 4, oack: true))
        _ = t.handle(.start(now: T(0)))
        #expect(t.handle(.ack(block: 0, now: T(0))) == [.sendBlocks(1..<5), .scheduleTimeout(T(1))])
        // Block 3 was lost: the client acknowledges 2; the next window starts at 3.
        #expect(t.handle(.ack(block: 2, now: T(0.1))) == [.sendBlocks(3..<7), .scheduleTimeout(T(1.1))])
        // Nothing comes back: the whole window again.
        #expect(t.handle(.timer(now: T(1.1))) == [.sendBlocks(3..<7), .scheduleTimeout(T(3.1))])
        #expect(t.handle(.ack(block: 6, now: T(1.2))) == [.sendBlocks(7..<11), .scheduleTimeout(T(2.2))])
        #expect(t.handle(.ack(block: 10, now: T(1.3))) == [.sendBlocks(11..<12), .scheduleTimeout(T(2.3))])
        #expect(t.handle(.ack(block: 11, now: T(1.4))) == [.finish(.completed)])
    }

    @Test func blockNumbersRollOverPast65535() {
        // 70,000 blocks of 8 octets and the empty last, windows of 16, ACKed by the wire number.
        var t = Transfer(Self.params(size: 8 * 70_000, block: 8, window: 16))
        var actions = t.handle(.start(now: T(0)))
        var highest = 0
        while case .sendBlocks(let r)? = actions.first {
            #expect(r.lowerBound == highest + 1)
            highest = r.upperBound - 1
            actions = t.handle(.ack(block: UInt16(truncatingIfNeeded: highest), now: T(0)))
        }
        #expect(highest == 70_001)
        #expect(actions == [.finish(.completed)])
    }

    @Test func retriesExhaustedFinishFailed() {
        var t = Transfer(Self.params(size: 10, oack: true, retries: 2))
        _ = t.handle(.start(now: T(0)))
        #expect(t.handle(.timer(now: T(1))) == [.sendOptionAck, .scheduleTimeout(T(3))])
        #expect(t.handle(.timer(now: T(3))) == [.sendOptionAck, .scheduleTimeout(T(7))])
        #expect(t.handle(.timer(now: T(7))) == [.finish(.failed(.noOptionAck(retries: 2)))])

        var d = Transfer(Self.params(size: 10, retries: 1))
        _ = d.handle(.start(now: T(0)))
        _ = d.handle(.timer(now: T(1)))
        #expect(d.handle(.timer(now: T(3))) == [.finish(.failed(.noAck(block: 1, retries: 1)))])
    }

    @Test func aSilentClientHoldsTheTransferForABoundedTime() {
        // Whatever timeout the client asked for, the wait is capped: 20 retries × 5 s at most.
        var t = Transfer(Self.params(size: 10, timeout: 255, retries: 20))
        var now = T(0)
        var actions = t.handle(.start(now: now))
        while case .scheduleTimeout(let deadline)? = actions.last {
            #expect(now.duration(to: deadline) <= .seconds(5))
            now = deadline
            actions = t.handle(.timer(now: now))
        }
        #expect(actions == [.finish(.failed(.noAck(block: 1, retries: 20)))])
        #expect(now <= T(105))
    }

    @Test func lifetimeEndsATricklingTransfer() {
        var t = Transfer(Self.params(size: 512 * 1000, lifetime: 10))
        _ = t.handle(.start(now: T(0)))
        for b in 1...9 { #expect(t.handle(.ack(block: UInt16(b), now: T(Double(b) * 0.9))).first == .sendBlocks((b + 1)..<(b + 2))) }
        #expect(t.handle(.ack(block: 10, now: T(10))) == [.sendError(code: .notDefined, message: "transfer took too long"),
                                                          .finish(.failed(.lifetimeExceeded(.seconds(10))))])
    }

    @Test func clientErrorAndAbortEndTheTransfer() {
        var t = Transfer(Self.params(size: 10))
        _ = t.handle(.start(now: T(0)))
        #expect(t.handle(.error(code: .notDefined, message: "user cancelled")) == [.finish(.failed(.clientError(code: .notDefined, message: "user cancelled")))])
        #expect(t.handle(.ack(block: 1, now: T(0))) == [])
        var u = Transfer(Self.params(size: 10))
        _ = u.handle(.start(now: T(0)))
        #expect(u.handle(.abort(reason: "port unreachable")) == [.finish(.failed(.aborted("port unreachable")))])
    }

    @Test func timeoutOptionAboveTheCapIsNotAcknowledged() {
        // RFC 2349: the server may not change the timeout, only accept or ignore it.
        let far = TFTPNegotiation(requested: [TFTPOption(name: "timeout", value: "255")], fileSize: 1)
        #expect(far.timeoutSeconds == 1 && far.acknowledged.isEmpty)
        let near = TFTPNegotiation(requested: [TFTPOption(name: "timeout", value: "3")], fileSize: 1)
        #expect(near.timeoutSeconds == 3 && near.acknowledged == [TFTPOption(name: "timeout", value: "3")])
        #expect(TFTPNegotiation(requested: [TFTPOption(name: "timeout", value: "10")], fileSize: 1, maxTimeoutSeconds: 10).timeoutSeconds == 10)
    }
}
