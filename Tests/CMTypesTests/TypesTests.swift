import CMTypes
import Dispatch
import Foundation
import Synchronization
import Testing

@Suite struct AddressTests {
    @Test(arguments: ["10.77.0.1", "0.0.0.0", "255.255.255.255", "127.0.0.1"])
    func parsesDottedQuads(text: String) throws {
        #expect(try #require(IPv4Address(text)).description == text)
    }

    @Test(arguments: ["", "10.77.0", "10.77.0.1.2", "256.0.0.1", "10.77.0.01x", "1.2.3.-4", " 1.2.3.4", "1..2.3", "0x1.2.3.4", "1234.1.1.1"])
    func rejectsEverythingElse(text: String) {
        #expect(IPv4Address(text) == nil)
    }

    @Test func networks() throws {
        let net = try #require(IPv4Network("10.77.0.0/24"))
        #expect(net.contains(try #require(IPv4Address("10.77.0.200"))))
        #expect(!net.contains(try #require(IPv4Address("10.77.1.1"))))
        #expect(IPv4Network("10.77.0.1/24") == nil, "host bits set")
        #expect(IPv4Network("10.77.0.0/33") == nil)
        #expect(IPv4Network("0.0.0.0/0")?.contains(IPv4Address(1, 2, 3, 4)) == true)
    }

    @Test func macAddresses() {
        #expect(MACAddress("52:54:00:AB:cd:01")?.description == "52:54:00:ab:cd:01")
        #expect(MACAddress("52:54:00:ab:cd") == nil)
        #expect(MACAddress("52:54:00:ab:cd:0g") == nil)
        #expect(MACAddress("52-54-00-ab-cd-01") == nil)
    }
}

@Suite struct NameTests {
    @Test func nodeNames() {
        #expect(NodeName.isValid("node001"))
        #expect(!NodeName.isValid("Node001"))
        #expect(!NodeName.isValid("-node"))
        #expect(!NodeName.isValid(""))
        #expect(!NodeName.isValid(String(repeating: "a", count: 64)))
    }

    @Test func checkIDs() {
        #expect(CheckID("web@node001") == CheckID(check: "web", node: "node001"))
        #expect(CheckID("a@b@node001")?.check == "a@b")
        #expect(CheckID("web") == nil)
        #expect(CheckID("@node") == nil)
        #expect(CheckID("web@") == nil)
    }
}

@Suite struct DurationTests {
    @Test(arguments: [("500ms", 500), ("2s", 2_000), ("1m30s", 90_000), ("7d", 604_800_000), ("1w", 604_800_000), ("0s", 0)] as [(String, Int64)])
    func parses(text: String, ms: Int64) {
        #expect(DurationText.parse(text) == .milliseconds(ms))
    }

    @Test(arguments: ["", "5", "5 seconds", "s", "1.5s", "-1s", "10x", "99999999999999d"])
    func rejects(text: String) {
        #expect(DurationText.parse(text) == nil)
    }

    @Test func formatsLargestUnitsFirst() {
        #expect(DurationText.format(.milliseconds(90_500)) == "1m30s500ms")
        #expect(DurationText.format(.zero) == "0s")
        #expect(DurationText.format(.seconds(86_400 * 30)) == "30d")
    }
}

@Suite struct ThreadTests {
    /// The name reaches the kernel (cut to its 15 bytes), as `ps -L` and top read it.
    @Test(arguments: [("lbd-loop-0", "lbd-loop-0"), ("tftp 10.77.0.5:41234", "tftp 10.77.0.5:")])
    func kernelKnowsTheName(name: String, expected: String) throws {
        let seen = Mutex<String?>(nil)
        let done = DispatchSemaphore(value: 0)
        startThread(named: name) {
            seen.withLock { $0 = try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8) }
            done.signal()
        }
        #expect(done.wait(timeout: .now() + 5) == .success)
        #expect(seen.withLock { $0 } == expected + "\n")
    }
}
