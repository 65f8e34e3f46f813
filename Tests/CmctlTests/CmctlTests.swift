import ArgumentParser
import Foundation
import Testing
@testable import cmctl

/// cmctl's own logic, without daemons: the command line as a user types it, the tables and
/// numbers it prints, the clone's pure helpers. What it says over the sockets is tested
/// against the real daemons by the integration tests.
@Suite struct CmctlCommandLineTests {
    @Test func commandsParseWithTheirOptions() throws {
        let status = try #require(try Cmctl.parseAsRoot(["vip", "status", "--json", "--runtime-dir", "/tmp/x"]) as? Vip.Status)
        #expect(status.global.json && status.global.runtimeDir == "/tmp/x")
        let volume = try #require(try Cmctl.parseAsRoot(["volume"]) as? Volume.Status)
        #expect(!volume.global.json && volume.global.runtimeDir == "/run/clustermaker")
    }

    @Test func aWrongCommandLineIsAUsageErrorNamingWhatIsWrong() {
        #expect(throws: (any Error).self) { try Cmctl.parseAsRoot(["vip", "statsu"]) }
        #expect(throws: (any Error).self) { try Cmctl.parseAsRoot(["vip", "status", "--runtime-dir"]) }
        do {
            _ = try Cmctl.parseAsRoot(["volume", "status", "--no-such-option"])
            Issue.record("an unknown option was accepted")
        } catch {
            #expect(Cmctl.message(for: error).contains("--no-such-option"))
            #expect(Cmctl.exitCode(for: error).rawValue == 64)
        }
    }
}

@Suite struct CmctlOutputTests {
    @Test func tablesAlignColumnsAndLeaveTheLastOneRagged() {
        var t = Table("NAME", "STATE", "MESSAGE")
        t.add("node001", "up", "HTTP 200")
        t.add("n2", "down", "connection refused")
        #expect(t.render() == """
            NAME     STATE  MESSAGE
            node001  up     HTTP 200
            n2       down   connection refused
            """)
    }

    @Test func durationsAndNumbersAreShortAndExact() {
        #expect(Format.duration(44.6) == "45s")
        #expect(Format.duration(125) == "2m05s")
        #expect(Format.duration(3720) == "1h02m")
        #expect(Format.number(1_500_000) == "1.50M")
        #expect(Format.number(12_345) == "12.3k")
        #expect(Format.number(2.5) == "2.50")
        #expect(Format.number(.nan) == "NaN")
        let now = Date(timeIntervalSince1970: 1_000_000)
        #expect(Format.age(since: now.addingTimeInterval(-3), now: now) == "3s ago")
        #expect(Format.age(since: now.addingTimeInterval(5), now: now) == "0s ago")   // a clock ahead is not negative
        #expect(Format.age(since: nil, now: now) == "-")
    }
}

@Suite struct CmctlCloneHelperTests {
    @Test func onlyTheSuitesConfigPagesAreTakenAsItsOwn() {
        #expect(Cloner.isSuiteManPage("vipd.toml.5"))
        #expect(Cloner.isSuiteManPage("cluster.toml.5.gz"))
        #expect(!Cloner.isSuiteManPage("ganesha-config.8"))
        #expect(!Cloner.isSuiteManPage("toml.5"))
    }

    @Test func theRoleIsReadFromAnotherVersionsJSON() {
        #expect(Cloner.role(#"{"role":"standby","epoch":12,"roleInstance":"VI_1","instances":[],"new":1}"#)! == ("standby", 12))
        #expect(Cloner.role("cmctl: cm-vipd is not running") == nil)
    }
}
