import CMConfig
@testable import CMReplication
import Foundation
import Logging
import Synchronization
import Testing

@Suite struct ConfigSyncTests {
    struct Setup {
        let dir = NSTemporaryDirectory() + "cm-configsync-\(UUID().uuidString.prefix(8))"
        var active: String { "\(dir)/m1" }
        var standby: String { "\(dir)/m2" }
        var volume: String { "\(dir)/volume/state/m1/etc" }
        final class Reloads: Sendable {
            let list = Mutex<[[String]]>([])
            func withLock<T>(_ body: (inout [[String]]) -> T) -> T { list.withLock { body(&$0) } }
        }
        let reloaded = Reloads()

        init() throws {
            for d in ["m1", "m2", "volume"] { try FileManager.default.createDirectory(atPath: "\(dir)/\(d)", withIntermediateDirectories: true) }
        }

        func write(_ base: String, _ rel: String, _ text: String) throws {
            let path = "\(base)/\(rel)"
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        }

        func read(_ base: String, _ rel: String) -> String? { try? String(contentsOfFile: "\(base)/\(rel)", encoding: .utf8) }

        func sync(_ configDir: String, check: @escaping @Sendable (String) -> String? = { _ in nil }) -> ConfigSync {
            let reloaded = self.reloaded
            return ConfigSync(configDir: configDir, logger: Logger(label: "test"), check: check, reload: { d in reloaded.withLock { $0.append(d) } })
        }

        func cleanUp() { try? FileManager.default.removeItem(atPath: dir) }
    }

    @Test func theStandbyTakesTheActivesFilesAndKeepsItsOwnHostValues() throws {
        let s = try Setup()
        defer { s.cleanUp() }
        try s.write(s.active, "healthd.toml", "[[check]]\nname = \"web\"\n")
        try s.write(s.active, "vipd.toml", "[[instance]]\nname = \"VI_1\"\npriority = 150\naddresses = [\"10.77.0.100/24\"]\n")
        try s.write(s.active, "ssh/id_ed25519", "KEY")
        try s.write(s.active, "pxed.toml.example", "ignored")
        try s.write(s.standby, "vipd.toml", "[[instance]]\nname = \"VI_1\"\npriority = 100\naddresses = [\"10.77.0.100/24\"]\n")
        try s.write(s.standby, "local-only.toml", "kept = true\n")

        let a = s.sync(s.active), b = s.sync(s.standby)
        try a.publish(to: s.volume)
        #expect(FileManager.default.fileExists(atPath: "\(s.volume)/manifest.json"))
        #expect(!FileManager.default.fileExists(atPath: "\(s.volume)/files/pxed.toml.example"))
        #expect(try b.apply(from: s.volume) == ["healthd.toml", "ssh/id_ed25519"])
        #expect(s.read(s.standby, "healthd.toml") == "[[check]]\nname = \"web\"\n")
        #expect(s.read(s.standby, "vipd.toml")?.contains("priority = 100") == true, "the standby's own priority was replaced")
        #expect(s.read(s.standby, "local-only.toml") == "kept = true\n")
        #expect(s.reloaded.withLock { $0 } == [["cm-healthd"]])
        #expect(try b.apply(from: s.volume).isEmpty, "applied twice")

        // A change on the active: the VIP list comes, the standby's priority stays.
        try s.write(s.active, "vipd.toml", "[[instance]]\nname = \"VI_1\"\npriority = 150\naddresses = [\"10.77.0.100/24\", \"10.77.0.101/24\"]\n")
        try a.publish(to: s.volume)
        #expect(try b.apply(from: s.volume) == ["vipd.toml"])
        #expect(s.read(s.standby, "vipd.toml") == "[[instance]]\nname = \"VI_1\"\npriority = 100\naddresses = [\"10.77.0.100/24\", \"10.77.0.101/24\"]\n")
        #expect(s.reloaded.withLock { $0.last } == ["cm-vipd"])
    }

    /// webd-users and the power key are group clustermaker's (the daemons that read them run
    /// as that user): the standby's copies get the same group, by name.
    @Test func aFilesGroupComesAlong() throws {
        let s = try Setup()
        defer { s.cleanUp() }
        guard geteuid() == 0, let group = getgrnam("adm") else { return }  // chgrp needs root; Debian has adm
        try s.write(s.active, "webd-users", "admin:$2b$...")
        chown("\(s.active)/webd-users", 0, group.pointee.gr_gid)
        chmod("\(s.active)/webd-users", 0o640)
        try s.sync(s.active).publish(to: s.volume)
        #expect(try s.sync(s.standby).apply(from: s.volume) == ["webd-users"])
        let attributes = try FileManager.default.attributesOfItem(atPath: "\(s.standby)/webd-users")
        #expect(attributes[.groupOwnerAccountName] as? String == "adm" && attributes[.posixPermissions] as? Int == 0o640)
        // Only the group changes on the active: the standby follows.
        chown("\(s.active)/webd-users", 0, 0)
        try s.sync(s.active).publish(to: s.volume)
        #expect(try s.sync(s.standby).apply(from: s.volume) == ["webd-users"])
        #expect(try FileManager.default.attributesOfItem(atPath: "\(s.standby)/webd-users")[.groupOwnerAccountName] as? String == "root")
    }

    @Test func aConfigurationThatDoesNotPassIsNotAppliedAndSaysWhy() throws {
        let s = try Setup()
        defer { s.cleanUp() }
        try s.write(s.active, "lbd.toml", "broken")
        try s.write(s.standby, "lbd.toml", "good")
        try s.sync(s.active).publish(to: s.volume)
        let b = s.sync(s.standby) { dir in (try? String(contentsOfFile: "\(dir)/lbd.toml", encoding: .utf8)) == "broken" ? "lbd.toml:1:1: bad" : nil }
        #expect(try b.apply(from: s.volume).isEmpty)
        #expect(s.read(s.standby, "lbd.toml") == "good")
        #expect(b.problem?.contains("does not pass here, not applied: lbd.toml:1:1: bad") == true)
        #expect(s.reloaded.withLock { $0 }.isEmpty)
    }

    @Test func clusterTomlConcernsEveryDaemon() {
        #expect(ConfigSync.daemons(for: ["cluster.toml"]).count == 7)
        #expect(ConfigSync.daemons(for: ["pxed.toml", "ssh/id_ed25519"]) == ["cm-pxed"])
    }
}
