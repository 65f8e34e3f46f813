import CMTypes
import Foundation
import Synchronization

/// One logged-in browser: who, its CSRF token, when it began and was last used.
public struct Session: Sendable, Equatable {
    public var user: String
    public var csrf: String
    public var created: Date
    public var lastUsed: Date
}

/// The console's sessions, in memory: a restart of cm-webd logs everyone out, which is what an
/// admin expects of a console after an upgrade. The cookie holds a random 256-bit token and
/// nothing else; the token is the key here.
public final class SessionStore: Sendable {
    struct State {
        var sessions: [String: Session] = [:]
    }

    let state = Mutex(State())
    let lifetime: Duration
    let idle: Duration
    let capacity: Int

    public init(lifetime: Duration, idle: Duration, capacity: Int) {
        self.lifetime = lifetime
        self.idle = idle
        self.capacity = max(1, capacity)
    }

    /// A new session for `user`; past the cap the least recently used one ends.
    public func open(user: String, now: Date = Date()) -> (token: String, session: Session) {
        let token = Self.randomToken(), session = Session(user: user, csrf: Self.randomToken(), created: now, lastUsed: now)
        state.withLock { s in
            prune(&s, now: now)
            if s.sessions.count >= capacity, let oldest = s.sessions.min(by: { $0.value.lastUsed < $1.value.lastUsed })?.key {
                s.sessions[oldest] = nil
            }
            s.sessions[token] = session
        }
        return (token, session)
    }

    /// The live session of `token`, marked used now; nil when unknown or expired.
    public func session(_ token: String, now: Date = Date()) -> Session? {
        state.withLock { s in
            guard var session = s.sessions[token] else { return nil }
            guard !expired(session, now: now) else {
                s.sessions[token] = nil
                return nil
            }
            session.lastUsed = now
            s.sessions[token] = session
            return session
        }
    }

    public func close(_ token: String) {
        _ = state.withLock { $0.sessions.removeValue(forKey: token) }
    }

    public var count: Int { state.withLock { $0.sessions.count } }

    func expired(_ session: Session, now: Date) -> Bool {
        now.timeIntervalSince(session.created) >= lifetime.seconds || now.timeIntervalSince(session.lastUsed) >= idle.seconds
    }

    func prune(_ s: inout State, now: Date) {
        s.sessions = s.sessions.filter { !expired($0.value, now: now) }
    }

    /// 32 bytes from the system's CSPRNG, base64url without padding (43 characters).
    static func randomToken() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        return Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// Compares two tokens in time that does not depend on where they differ.
    public static func same(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<x.count { diff |= x[i] ^ y[i] }
        return diff == 0
    }
}

/// Failed logins per client address in a sliding window: past `attempts`, logins from that
/// address are refused (429) until the oldest failure leaves the window. Successful logins do
/// not count. The table is capped so that a flood of addresses cannot grow it without bound.
public final class LoginThrottle: Sendable {
    let failures = Mutex([String: [Date]]())
    let attempts: Int
    let window: Duration
    static let maxAddresses = 10_000

    public init(attempts: Int, window: Duration) {
        self.attempts = attempts
        self.window = window
    }

    /// Seconds until `address` may try again; nil: it may now.
    public func retryAfter(_ address: String, now: Date = Date()) -> Int? {
        failures.withLock { table in
            let recent = (table[address] ?? []).filter { now.timeIntervalSince($0) < window.seconds }
            table[address] = recent.isEmpty ? nil : recent
            guard recent.count >= attempts, let oldest = recent.first else { return nil }
            return max(1, Int((window.seconds - now.timeIntervalSince(oldest)).rounded(.up)))
        }
    }

    public func failed(_ address: String, now: Date = Date()) {
        failures.withLock { table in
            if table[address] == nil, table.count >= Self.maxAddresses {
                table = table.filter { $0.value.contains { now.timeIntervalSince($0) < window.seconds } }
                if table.count >= Self.maxAddresses, let any = table.keys.first { table[any] = nil }
            }
            table[address, default: []].append(now)
        }
    }
}
