import CMImage
import CMTypes
import Foundation
import Testing

@Suite struct ImageRefTests {
    @Test func parsesNamesAndPins() {
        #expect(ImageRef("compute") == ImageRef(name: "compute"))
        #expect(ImageRef("compute@3") == ImageRef(name: "compute", revision: 3))
        #expect(ImageRef("compute@3")?.description == "compute@3")
        for bad in ["", "a/b", "..", "../x", ".hidden", "-rf", "x@", "x@0", "x@-1", "x@03", "x@1@2", "x y", String(repeating: "a", count: 33)] {
            #expect(ImageRef(bad) == nil, "\(bad)")
        }
    }
}

@Suite struct ImageStoreTests {
    func tempStore() throws -> ImageStore {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cm-images-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return ImageStore(directory: dir)
    }

    func stage(_ store: ImageStore, _ name: String, file: String = "hello") throws -> String {
        let dir = try store.incoming(name)
        try FileManager.default.createDirectory(atPath: "\(dir)/root/etc", withIntermediateDirectories: true)
        try file.write(toFile: "\(dir)/root/etc/motd", atomically: true, encoding: .utf8)
        try "k".write(toFile: "\(dir)/vmlinuz", atomically: true, encoding: .utf8)
        return dir
    }

    @Test func publishingNumbersRevisionsAndResolvesTheNewest() throws {
        let store = try tempStore()
        defer { try? FileManager.default.removeItem(atPath: store.directory) }
        let one = try store.publish(try stage(store, "compute"), info: ImageRevisionInfo(name: "compute", suite: "bookworm", packages: [], createdBy: "t", how: "build"))
        let two = try store.publish(try stage(store, "compute"), info: ImageRevisionInfo(name: "compute", suite: "bookworm", packages: ["vim"], createdBy: "t", how: "build"))
        #expect(one.revision == 1 && two.revision == 2)
        #expect(store.images() == ["compute"])
        #expect(store.revisionNumbers("compute") == [1, 2])
        #expect(try store.resolve(ImageRef(name: "compute")) == 2)
        #expect(try store.resolve(ImageRef(name: "compute", revision: 1)) == 1)
        #expect(try store.info("compute", 2).packages == ["vim"])
        #expect(throws: ImageStoreError.self) { try store.resolve(ImageRef(name: "compute", revision: 7)) }
        #expect(throws: ImageStoreError.self) { try store.resolve(ImageRef(name: "nope")) }
        // No staging directory is left beside the revisions.
        #expect(try FileManager.default.contentsOfDirectory(atPath: store.path("compute")).filter { $0.hasPrefix(".incoming") }.isEmpty)
        try store.remove("compute", revision: 1)
        #expect(store.revisionNumbers("compute") == [2])
        try store.remove("compute", revision: nil)
        #expect(store.images().isEmpty)
    }

    @Test func aKernelOnlyImageHasNoRevisions() throws {
        let store = try tempStore()
        defer { try? FileManager.default.removeItem(atPath: store.directory) }
        try FileManager.default.createDirectory(atPath: store.path("memtest"), withIntermediateDirectories: true)
        try "k".write(toFile: "\(store.path("memtest"))/vmlinuz", atomically: true, encoding: .utf8)
        #expect(store.isKernelOnly("memtest"))
        #expect(try store.resolve(ImageRef(name: "memtest")) == nil)
        #expect(try store.bootDirectory(ImageRef(name: "memtest")) == store.path("memtest"))
    }

    @Test func aFailedFirstBuildShowsNoImageAndIsSweptAway() throws {
        let store = try tempStore()
        defer { try? FileManager.default.removeItem(atPath: store.directory) }
        let dir = try store.incoming("half")
        // A staging directory of a process of this host that is gone, and one of another
        // master's (the store is shared): only the first is swept.
        let here = dir.split(separator: "@").last.map(String.init) ?? ""
        let orphan = "\(store.path("half"))/.incoming-999999999-1@\(here)"
        let other = "\(store.path("half"))/.incoming-999999999-2@another-master"
        try FileManager.default.moveItem(atPath: dir, toPath: orphan)
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: false)
        #expect(store.images().isEmpty)
        store.sweep()
        #expect(!FileManager.default.fileExists(atPath: orphan))
        #expect(FileManager.default.fileExists(atPath: other))
    }

    @Test func invalidNamesAreRefusedBeforeAnythingIsWritten() throws {
        let store = try tempStore()
        defer { try? FileManager.default.removeItem(atPath: store.directory) }
        #expect(throws: ImageStoreError.self) { try store.incoming("../etc") }
        #expect(throws: ImageStoreError.self) { try store.incoming("a/b") }
        #expect(try FileManager.default.contentsOfDirectory(atPath: store.directory).isEmpty)
    }

    @Test func aBusyImageIsReported() throws {
        let store = try tempStore()
        defer { try? FileManager.default.removeItem(atPath: store.directory) }
        try store.withLock("x") {
            // flock locks belong to the open file description: a second open is a second holder.
            #expect(throws: ImageStoreError.self) { try store.withLock("x", wait: false) {} }
        }
    }

    @Test func rangesReadLikeAnAdminWritesThem() {
        #expect(ImageStore.ranges([1, 2, 3, 5, 7, 8]) == "1-3, 5, 7-8")
        #expect(ImageStore.ranges([]) == "none")
    }
}

@Suite struct TreeDiffTests {
    func tree(_ files: [String: String]) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cm-tree-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for (path, content) in files {
            let p = dir + path
            try FileManager.default.createDirectory(atPath: (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try content.write(toFile: p, atomically: false, encoding: .utf8)
        }
        return dir
    }

    @Test func findsAddedChangedAndRemovedFiles() throws {
        let a = try tree(["/etc/motd": "a", "/etc/keep": "same", "/usr/gone/x": "1", "/etc/size": "12"])
        let b = try tree(["/etc/motd": "b", "/etc/keep": "same", "/etc/new": "n", "/etc/size": "123"])
        defer { try? FileManager.default.removeItem(atPath: a); try? FileManager.default.removeItem(atPath: b) }
        let d = try TreeDiff.compare(a, b)
        #expect(d.added == ["/etc/new"])
        #expect(d.changed == ["/etc/motd", "/etc/size"])
        #expect(d.removed == ["/usr", "/usr/gone", "/usr/gone/x"])
        #expect(d.lines == ["C /etc/motd", "A /etc/new", "C /etc/size", "D /usr", "D /usr/gone", "D /usr/gone/x"])
        #expect(try TreeDiff.compare(a, a).isEmpty)
    }

    @Test func aCopyWithOtherTimesIsNoChange() throws {
        let a = try tree(["/f": "same"])
        let b = try tree(["/f": "same"])
        defer { try? FileManager.default.removeItem(atPath: a); try? FileManager.default.removeItem(atPath: b) }
        var times = [timespec(tv_sec: 1000, tv_nsec: 0), timespec(tv_sec: 1000, tv_nsec: 0)]
        utimensat(AT_FDCWD, a + "/f", &times, 0)
        #expect(try TreeDiff.compare(a, b).isEmpty)
    }

    @Test func aSymlinkTargetChangeIsAChange() throws {
        let a = try tree([:]), b = try tree([:])
        defer { try? FileManager.default.removeItem(atPath: a); try? FileManager.default.removeItem(atPath: b) }
        symlink("one", a + "/l")
        symlink("two", b + "/l")
        #expect(try TreeDiff.compare(a, b).changed == ["/l"])
    }

    @Test func overlayWhiteoutsAreRemovalsAndUpperFilesChangesOrAdditions() {
        let image: Set<String> = ["/etc", "/etc/motd", "/etc/hosts", "/var", "/var/log"]
        let d = TreeDiff.overlay([("d", "etc"), ("f", "etc/motd"), ("c", "etc/hosts"), ("f", "etc/new.conf"), ("d", "var"), ("d", "var/log"),
                                  ("d", "var/cache"), ("f", "var/cache/x")], inImage: image.contains)
        #expect(d.changed == ["/etc/motd"])
        #expect(d.removed == ["/etc/hosts"])
        #expect(d.added == ["/etc/new.conf", "/var/cache", "/var/cache/x"])
    }
}

@Suite struct ImageBuilderTests {
    @Test func packageNamesAreDebianOnes() {
        for ok in ["vim", "libc6", "g++", "node-exporter", "python3.11"] { #expect(ImageBuilder.isPackageName(ok), "\(ok)") }
        for bad in ["", "a", "Vim", "-rf", "x;rm", "a b", "$(id)", "../x"] { #expect(!ImageBuilder.isPackageName(bad), "\(bad)") }
    }

    @Test func aBadRequestIsRefusedWithWhatIsWrong() throws {
        let store = ImageStore(directory: "/nonexistent")
        let b = ImageBuilder(store: store, workDirectory: "/nonexistent", cacheDirectory: "/nonexistent")
        #expect(throws: ImageStoreError.self) { try b.validate(BuildRequest(name: "../x")) }
        #expect(throws: ImageStoreError.self) { try b.validate(BuildRequest(name: "x", packages: ["vim;rm"])) }
        #expect(throws: ImageStoreError.self) { try b.validate(BuildRequest(name: "x", suite: "Bookworm/../")) }
        #expect(throws: ImageStoreError.self) { try b.validate(BuildRequest(name: "x", from: ImageRef(name: "nope"))) }
        #expect(throws: ImageStoreError.self) { try b.validate(BuildRequest(name: "x", sshKey: "/nonexistent/key.pub")) }
        try b.validate(BuildRequest(name: "x", packages: ["vim"]))
    }

    @Test func progressFollowsMmdebstrapsStagesAndAptsPackages() {
        var seen: [BuildProgress] = []
        var t = ProgressTracker(started: Date()) { seen.append($0) }
        for l in ["I: running apt-get update...", "I: downloading packages with apt...", "I: installing remaining packages inside the chroot...",
                  "0 upgraded, 4 newly installed, 0 to remove and 0 not upgraded.", "Setting up a", "Setting up b", "Setting up c", "Setting up d",
                  "I: running --customize-hook in shell"] {
            t.line(l)
        }
        #expect(seen.map(\.stage).first == "apt-get update")
        #expect(seen.map(\.percent) == seen.map(\.percent).sorted())
        #expect(seen.contains { $0.stage == "installing packages" && $0.percent == 85 })
        #expect(t.stage == "customizing")
    }

    @Test func theMastersSourcesAreUsedForItsOwnSuite() throws {
        let etc = FileManager.default.temporaryDirectory.appendingPathComponent("cm-etc-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: etc) }
        try FileManager.default.createDirectory(atPath: "\(etc)/apt/sources.list.d", withIntermediateDirectories: true)
        try "VERSION_CODENAME=bookworm\n".write(toFile: "\(etc)/os-release", atomically: true, encoding: .utf8)
        try "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n\nTypes: deb\nURIs: http://mirror.example/debian-security\n"
            .write(toFile: "\(etc)/apt/sources.list.d/debian.sources", atomically: true, encoding: .utf8)
        #expect(AptSources.mirrors(suite: "bookworm", etc: etc) == ["\(etc)/apt/sources.list.d/debian.sources"])
        #expect(AptSources.mirrors(suite: "trixie", etc: etc) == ["http://mirror.example/debian"])
    }
}

@Suite struct NodeFilesTests {
    /// `sh -n` on every script a node runs: a syntax error there is a node that does not boot.
    @Test func theNodesScriptsAreValidShell() throws {
        let scripts = [("initramfs", NodeFiles.initramfsScript), ("hook", NodeFiles.initramfsHook), ("finish", NodeFiles.finishScript),
                       ("identity", NodeFiles.identityScript)]
        for (name, text) in scripts {
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("cm-node-\(name)-\(UUID().uuidString).sh").path
            defer { try? FileManager.default.removeItem(atPath: file) }
            try text.write(toFile: file, atomically: true, encoding: .utf8)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-n", file]
            try p.run()
            p.waitUntilExit()
            #expect(p.terminationStatus == 0, "\(name)")
        }
    }

    @Test func everyFileGoesUnderTheRootAndTheIdentityUnitRunsItsScript() {
        for f in NodeFiles.early + NodeFiles.late { #expect(f.path.hasPrefix("/") && !f.path.contains("..")) }
        #expect(NodeFiles.identityUnit.contains("ExecStart=/usr/lib/clustermaker/node-identity"))
        #expect(NodeFiles.late.contains { $0.path == "/usr/lib/clustermaker/node-identity" && $0.mode == 0o755 })
        #expect(NodeFiles.initramfsScript.contains("mountroot()"))
    }
}
