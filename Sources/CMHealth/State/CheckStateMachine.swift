import CMTypes

/// A check's state inside cm-healthd: the same three values it publishes.
public typealias CheckState = HealthState

/// Rise/fall counting for one check instance, as HAProxy and keepalived do it: `rise`
/// consecutive successes make a check up, `fall` consecutive failures make it down; a result
/// of the other polarity starts the count again. Pure: events in, actions out.
public struct CheckStateMachine: Sendable, Equatable {
    public enum Event: Sendable, Equatable {
        case probe(ok: Bool, message: String)
        /// New rise/fall from a reload; counts so far are kept.
        case reconfigure(rise: Int, fall: Int)
    }

    public enum Action: Sendable, Equatable {
        case transition(from: CheckState, to: CheckState, message: String)
    }

    public private(set) var state: CheckState
    public private(set) var rise: Int
    public private(set) var fall: Int
    public private(set) var consecutiveSuccesses = 0
    public private(set) var consecutiveFailures = 0

    public init(rise: Int, fall: Int, initial: CheckState = .unknown) {
        self.rise = max(1, rise)
        self.fall = max(1, fall)
        self.state = initial
    }

    public mutating func handle(_ event: Event) -> [Action] {
        switch event {
        case .reconfigure(let rise, let fall):
            self.rise = max(1, rise)
            self.fall = max(1, fall)
            return settle(message: "rise/fall changed")
        case .probe(let ok, let message):
            if ok {
                consecutiveSuccesses += 1
                consecutiveFailures = 0
            } else {
                consecutiveFailures += 1
                consecutiveSuccesses = 0
            }
            return settle(message: message)
        }
    }

    private mutating func settle(message: String) -> [Action] {
        let from = state
        if state != .up, consecutiveSuccesses >= rise {
            state = .up
        } else if state != .down, consecutiveFailures >= fall {
            state = .down
        }
        return from == state ? [] : [.transition(from: from, to: state, message: message)]
    }
}
