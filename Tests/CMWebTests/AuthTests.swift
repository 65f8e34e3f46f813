@testable import CMAuth
import CMConfig
import CMTypes
@testable import CMConsole
@testable import CMWeb
import Foundation
import Testing

@Suite struct UsersFileTests {
    // Cost 4 keeps the tests fast; the file format does not depend on it.
    static let adminLine = UsersFile.line(user: "admin", password: "right-password", cost: 4)

    @Test func parsesAndVerifies() throws {
        let users = try UsersFile.parse("# console users\n\n\(Self.adminLine)\n", path: "/etc/u")
        #expect(users.verify(user: "admin", password: "right-password"))
        #expect(!users.verify(user: "admin", password: "wrong-password"))
        #expect(!users.verify(user: "nobody", password: "right-password"))
    }

    @Test func readsHtpasswdsTwoY() throws {
        // htpasswd -B writes $2y$; the same algorithm as $2b$.
        let line = Self.adminLine.replacingOccurrences(of: "$2b$", with: "$2y$")
        #expect(try UsersFile.parse(line, path: "/etc/u").verify(user: "admin", password: "right-password"))
    }

    @Test func theDecoyIsAValidHash() {
        #expect(UsersFile.isBcrypt(UsersFile.decoy))
    }

    @Test(arguments: [
        ("admin", "/etc/u:1: not NAME:BCRYPT-HASH"),
        ("admin:plain", "/etc/u:1: user \"admin\": not a bcrypt hash ($2b$ or $2y$, 60 characters; make one with cmctl web passwd)"),
        ("bad name:$2b$04$abcdefghijklmnopqrstuuH4LyVD2TrdsQs6czSH6ad3.lF76oT5y", "/etc/u:1: \"bad name\" is not a user name (1-32 of a-z, A-Z, 0-9, \".\", \"_\", \"-\")"),
    ])
    func refusesBadLines(text: String, message: String) {
        #expect(throws: UsersFile.Problem.self) { try UsersFile.parse(text, path: "/etc/u") }
        do { _ = try UsersFile.parse(text, path: "/etc/u") } catch { #expect(error.description == message) }
    }

    @Test func refusesATwiceListedUser() {
        #expect(throws: UsersFile.Problem.self) { try UsersFile.parse("\(Self.adminLine)\n\(Self.adminLine)\n", path: "/etc/u") }
    }

    @Test func settingAndRemovingKeepOtherLines() {
        let text = "# mine\nalice:x\nbob:y\n"
        #expect(UsersFile.setting(text, user: "bob", line: "bob:z") == "# mine\nalice:x\nbob:z\n")
        #expect(UsersFile.setting(text, user: "carol", line: "carol:c") == "# mine\nalice:x\nbob:y\ncarol:c\n")
        #expect(UsersFile.removing(text, user: "alice") == "# mine\nbob:y\n")
    }
}

@Suite struct SystemLoginTests {
    @Test func groupMembershipIsPrimaryOrSupplementary() {
        #expect(SystemLogin.isMember(user: "root", of: "root"), "primary group")
        #expect(!SystemLogin.isMember(user: "no-such-user-\(getpid())", of: "root"))
        #expect(!SystemLogin.isMember(user: "root", of: "no-such-group-\(getpid())"))
    }

    @Test func nonsenseNeverReachesPAM() {
        let login = SystemLogin(service: "cm-webd-test", group: "root")
        #expect(login.check(user: "bad name", password: "x") == .refused("not a user name or password"))
        #expect(login.check(user: "root", password: "") == .refused("not a user name or password"))
    }
}

@Suite struct SessionTests {
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    @Test func sessionsExpireWhenIdleOrOld() {
        let store = SessionStore(lifetime: .seconds(3600), idle: .seconds(600), capacity: 10)
        let (token, session) = store.open(user: "admin", now: t0)
        #expect(token.count == 43 && session.csrf.count == 43 && token != session.csrf)
        #expect(store.session(token, now: t0.addingTimeInterval(599))?.user == "admin")
        // Used at 599 s: idle counts from then.
        #expect(store.session(token, now: t0.addingTimeInterval(1100)) != nil)
        #expect(store.session(token, now: t0.addingTimeInterval(1800)) == nil)
        let (busy, _) = store.open(user: "admin", now: t0)
        for minute in 1...59 { #expect(store.session(busy, now: t0.addingTimeInterval(Double(minute * 60))) != nil) }
        #expect(store.session(busy, now: t0.addingTimeInterval(3600)) == nil, "the lifetime ends a busy session too")
        #expect(store.session("made-up", now: t0) == nil)
    }

    @Test func theCapEndsTheLeastRecentlyUsed() {
        let store = SessionStore(lifetime: .seconds(3600), idle: .seconds(3600), capacity: 2)
        let a = store.open(user: "a", now: t0).token, b = store.open(user: "b", now: t0.addingTimeInterval(1)).token
        _ = store.session(a, now: t0.addingTimeInterval(2))
        let c = store.open(user: "c", now: t0.addingTimeInterval(3)).token
        #expect(store.count == 2)
        #expect(store.session(b, now: t0.addingTimeInterval(4)) == nil)
        #expect(store.session(a, now: t0.addingTimeInterval(4)) != nil && store.session(c, now: t0.addingTimeInterval(4)) != nil)
    }

    @Test func throttleCountsFailuresInTheWindow() {
        let throttle = LoginThrottle(attempts: 3, window: .seconds(60))
        for i in 0..<3 {
            #expect(throttle.retryAfter("10.0.0.1", now: t0.addingTimeInterval(Double(i))) == nil)
            throttle.failed("10.0.0.1", now: t0.addingTimeInterval(Double(i)))
        }
        #expect(throttle.retryAfter("10.0.0.1", now: t0.addingTimeInterval(10)) == 50)
        #expect(throttle.retryAfter("10.0.0.2", now: t0.addingTimeInterval(10)) == nil, "per address")
        #expect(throttle.retryAfter("10.0.0.1", now: t0.addingTimeInterval(60.5)) == nil, "the first failure left the window")
    }

    @Test func tokensCompareWhole() {
        #expect(SessionStore.same("abc", "abc"))
        #expect(!SessionStore.same("abc", "abd") && !SessionStore.same("abc", "ab") && !SessionStore.same("", "a"))
    }
}

@Suite struct WebdConfigTests {
    func parse(_ text: String) throws(ConfigErrors) -> WebdConfig {
        try WebdConfig.parse(ConfigSource(path: "/etc/clustermaker/webd.toml", text: text))
    }

    @Test func plainHTTPOnlyOnLoopback() throws {
        let c = try parse("[http]\nlisten = \"127.0.0.1:8080\"\n")
        #expect(c.http.listen.port == 8080 && !c.tlsEnabled && c.auth.publicMetrics && c.auth.loginAttempts == 5)
        #expect(c.auth.pam && c.auth.pamService == "cm-webd" && c.auth.pamGroup == "clustermaker")
        #expect(throws: ConfigErrors.self) { try parse("[http]\nlisten = \"127.0.0.1:1\"\n[auth]\npam_service = \"../x y\"\n") }
        #expect(throws: ConfigErrors.self) { try parse("") }
        do { _ = try parse("[http]\nlisten = \"0.0.0.0:9443\"\n") } catch {
            #expect(error.description.hasPrefix("/etc/clustermaker/webd.toml:2:10: http: listen: 0.0.0.0:9443 is not a loopback address, so the console needs TLS"))
        }
    }

    @Test func tlsNeedsBothFiles() throws {
        let c = try parse("[http]\ntls_certificate = \"/etc/c.pem\"\ntls_key = \"/etc/k.pem\"\n")
        #expect(c.tlsEnabled && c.http.listen.port == 9443)
        #expect(throws: ConfigErrors.self) { try parse("[http]\ntls_certificate = \"/etc/c.pem\"\n") }
        #expect(throws: ConfigErrors.self) { try parse("[http]\nlisten = \"127.0.0.1:1\"\ntls_key = \"k.pem\"\ntls_certificate = \"/c\"\n") }
    }

    @Test func badValuesNameTheirKey() {
        for (text, key) in [("[http]\nlisten = \"127.0.0.1\"\n", "2:10: http: listen"), ("[http]\nlisten = \"127.0.0.1:1\"\nmax_connections = 0\n", "3:19: http: max_connections"),
                            ("[http]\nlisten = \"127.0.0.1:1\"\n[auth]\nsession_idle = \"1s\"\n", "4:16: auth: session_idle"),
                            ("[http]\nlisten = \"127.0.0.1:1\"\n[auth]\nusers = \"x\"\n", "4:1: auth: users: unknown key")] {
            do {
                _ = try parse(text)
                Issue.record("accepted \(text)")
            } catch {
                #expect(error.description.contains(key), "\(error)")
            }
        }
    }
}
