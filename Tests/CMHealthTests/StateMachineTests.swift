import CMHealth
import Testing

@Suite struct StateMachineTests {
    /// Runs a sequence of probe results ("+" ok, "-" failed) and returns the states after each.
    func run(_ results: String, rise: Int, fall: Int, initial: CheckState = .unknown) -> [CheckState] {
        var m = CheckStateMachine(rise: rise, fall: fall, initial: initial)
        return results.map { c in
            _ = m.handle(.probe(ok: c == "+", message: ""))
            return m.state
        }
    }

    @Test(arguments: [
        // results, rise, fall, initial, expected states after each result
        ("++", 2, 3, CheckState.unknown, [CheckState.unknown, .up]),
        ("---", 2, 3, .unknown, [.unknown, .unknown, .down]),
        ("+", 1, 1, .unknown, [.up]),
        ("-", 1, 1, .unknown, [.down]),
        ("--+--", 2, 3, .up, [.up, .up, .up, .up, .up]),            // a success resets the failure count
        ("---", 2, 3, .up, [.up, .up, .down]),
        ("+-+-+-", 2, 2, .down, [.down, .down, .down, .down, .down, .down]),  // flapping never rises
        ("++", 2, 2, .down, [.down, .up]),
        ("-+", 1, 1, .up, [.down, .up]),
        ("+++", 3, 1, .down, [.down, .down, .up]),
    ])
    func transitions(results: String, rise: Int, fall: Int, initial: CheckState, expected: [CheckState]) {
        #expect(run(results, rise: rise, fall: fall, initial: initial) == expected)
    }

    @Test func transitionActionsCarryTheMessage() {
        var m = CheckStateMachine(rise: 1, fall: 2)
        #expect(m.handle(.probe(ok: false, message: "refused")) == [])
        #expect(m.handle(.probe(ok: false, message: "refused again")) == [.transition(from: .unknown, to: .down, message: "refused again")])
        #expect(m.handle(.probe(ok: false, message: "still")) == [], "no repeated transition while down")
        #expect(m.handle(.probe(ok: true, message: "HTTP 200")) == [.transition(from: .down, to: .up, message: "HTTP 200")])
        #expect(m.consecutiveSuccesses == 1 && m.consecutiveFailures == 0)
    }

    @Test func reconfigureMidCountKeepsTheCount() {
        var m = CheckStateMachine(rise: 2, fall: 5, initial: .up)
        _ = m.handle(.probe(ok: false, message: "x"))
        _ = m.handle(.probe(ok: false, message: "x"))
        #expect(m.state == .up)
        #expect(m.handle(.reconfigure(rise: 2, fall: 2)) == [.transition(from: .up, to: .down, message: "rise/fall changed")])
    }
}
