@testable import CMSnap
import CMTypes
import Foundation
import Testing

/// A source tree and a store in a temporary directory (or on a filesystem of its own).
struct SnapshotFixture {
    let dir: String
    var source: String { "\(dir)/src" }
    var store: String { "\(dir)/store" }

    init(in base: String = NSTemporaryDirectory() + "cm-snap-\(UInt32.random(in: 0 ... .max))") throws {
        dir = base
        try FileManager.default.createDirectory(atPath: "\(base)/src/clustermaker", withIntermediateDirectories: true)
        try write("hostname", "m1\n")
        try write("clustermaker/pxed.toml", "[pxed]\nmode = \"dhcp\"\n")
    }

    func write(_ rel: String, _ text: String) throws {
        let path = "\(source)/\(rel)"
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: path, atomically: false, encoding: .utf8)
    }

    func read(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }

    /// The whole life of a store: create, diff, single-file and whole restores, removal, and
    /// what a crash leaves behind. Returns the store for backend-specific checks.
    @discardableResult
    func exercise() throws -> SnapshotStore {
        let store = try SnapshotStore(dataSet: "system", source: source, root: self.store)
        let first = try store.create(note: "before the change")
        #expect(first.id == 1 && first.kind == .single && first.note == "before the change" && first.backend == store.backend)
        #expect(read("\(store.tree(1))/hostname") == "m1\n")

        try write("hostname", "m1-renamed\n")
        try write("clustermaker/lbd.toml", "[[frontend]]\n")
        try FileManager.default.removeItem(atPath: "\(source)/clustermaker/pxed.toml")
        let second = try store.create(kind: .timeline)
        #expect(second.id == 2 && store.list().map(\.id) == [1, 2])
        #expect(read("\(store.tree(1))/hostname") == "m1\n", "a snapshot does not change when its source does")
        let d = try store.diff(1, 2)
        #expect(d.added == ["/clustermaker/lbd.toml"] && d.changed == ["/hostname"] && d.removed == ["/clustermaker/pxed.toml"])
        #expect(try store.diff(2, nil).isEmpty, "snapshot 2 is the source as it is")

        // One file back; the rest stays.
        try store.restore(1, file: "clustermaker/pxed.toml")
        #expect(read("\(source)/clustermaker/pxed.toml") == "[pxed]\nmode = \"dhcp\"\n" && read("\(source)/hostname") == "m1-renamed\n")
        #expect(throws: SnapshotError.self) { try store.restore(1, file: "../../etc/shadow") }
        #expect(throws: SnapshotError.self) { try store.restore(1, file: "clustermaker/nothing.toml") }

        // The whole tree back, after a safety snapshot.
        let (safety, changes) = try store.restore(1)
        #expect(safety.kind == .safety && safety.id == 3 && read("\(store.tree(3))/hostname") == "m1-renamed\n")
        #expect(changes.changed == ["/hostname"] && changes.removed == ["/clustermaker/lbd.toml"])
        #expect(read("\(source)/hostname") == "m1\n" && !FileManager.default.fileExists(atPath: "\(source)/clustermaker/lbd.toml"))
        #expect(try store.diff(1, nil).isEmpty)

        // A crash mid-snapshot leaves a partial: never listed, removed by the next create.
        try FileManager.default.createDirectory(atPath: "\(self.store)/.partial-9/tree", withIntermediateDirectories: true)
        #expect(store.list().map(\.id) == [1, 2, 3])
        #expect(try store.create().id == 4 && !FileManager.default.fileExists(atPath: "\(self.store)/.partial-9"))

        try store.remove(2)
        #expect(store.list().map(\.id) == [1, 3, 4] && !FileManager.default.fileExists(atPath: "\(self.store)/2"))
        #expect(throws: SnapshotError.self) { try store.remove(2) }
        #expect(throws: SnapshotError.self) { try store.diff(2, 1) }
        #expect(read("\(store.tree(1))/hostname") == "m1\n", "removing one snapshot leaves the others whole (hard links included)")
        try store.remove(4)
        #expect(try store.create().id == 5, "the removed newest's id is not given again")
        return store
    }
}

@Suite struct SnapshotStoreTests {
    /// On this machine's temporary directory: whatever backend it offers (ext4: hard links).
    @Test func aStoreOnTheTemporaryDirectory() throws {
        let f = try SnapshotFixture()
        defer { try? FileManager.default.removeItem(atPath: f.dir) }
        let store = try f.exercise()
        if try FilesystemKind.of(f.dir) == .ext4 {
            #expect(store.backend == .hardlink)
            // Unchanged files share their inode with the previous snapshot.
            var a = stat(), b = stat()
            #expect(stat("\(store.tree(3))/clustermaker/pxed.toml", &a) == 0 && stat("\(store.tree(5))/clustermaker/pxed.toml", &b) == 0 && a.st_ino == b.st_ino)
        }
    }

    @Test func aSourceThatIsNotADirectory() {
        #expect(throws: SnapshotError.self) { try SnapshotStore(dataSet: "x", source: "/nonexistent/cm", root: NSTemporaryDirectory() + "cm-snap-none") }
    }
}

/// btrfs and XFS (reflink) on loop devices of their own: each backend for real. Root only
/// (scripts/test runs as root and installs btrfs-progs and xfsprogs).
@Suite(.enabled(if: geteuid() == 0, "loop devices need root"), .serialized) struct SnapshotBackendsOnLoopDevices {
    /// A filesystem made by `mkfs` in a 300 MB file, loop-mounted for `body`.
    func onLoop(_ mkfs: [String], _ body: (String) throws -> Void) throws {
        let dir = NSTemporaryDirectory() + "cm-snap-loop-\(UInt32.random(in: 0 ... .max))", image = dir + ".img"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer {
            _ = try? ChildProcess.run("/usr/bin/umount", ["-l", dir])
            try? FileManager.default.removeItem(atPath: dir)
            try? FileManager.default.removeItem(atPath: image)
        }
        #expect(FileManager.default.createFile(atPath: image, contents: nil))
        #expect(truncate(image, 300 << 20) == 0)
        let made = try ChildProcess.run(mkfs[0], Array(mkfs.dropFirst()) + [image])
        try #require(made.succeeded, "\(mkfs[0]): \(made.failure(mkfs[0], timeout: nil))")
        let mounted = try ChildProcess.run("/usr/bin/mount", ["-o", "loop", image, dir])
        try #require(mounted.succeeded, "mount: \(mounted.failure("mount", timeout: nil))")
        try body(dir)
    }

    /// 30,000 files in 300 directories: a snapshot, 100 changed, 50 removed and 20 added,
    /// the diff says exactly that, a whole restore makes the tree the snapshot again.
    func thirtyThousandFiles(in mnt: String) throws -> SnapshotStore {
        let src = "\(mnt)/big"
        for d in 0..<300 {
            let dir = "\(src)/d\(d)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            for f in 0..<100 {
                // open/write/close: FileManager.createFile takes a millisecond a file here.
                let fd = open("\(dir)/f\(f)", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
                let text = Array("file \(d)/\(f)\n".utf8)
                #expect(fd >= 0 && write(fd, text, text.count) == text.count)
                close(fd)
            }
        }
        let store = try SnapshotStore(dataSet: "big", source: src, root: "\(mnt)/big-store")
        let started = ContinuousClock.now
        let one = try store.create()
        let took = ContinuousClock.now - started
        print("30,000 files, \(store.backend.rawValue): snapshot in \(took)")
        for i in 0..<100 { try Data("changed \(i), longer than before\n".utf8).write(to: URL(fileURLWithPath: "\(src)/d\(i)/f0")) }
        for i in 0..<50 { try FileManager.default.removeItem(atPath: "\(src)/d\(i + 100)/f1") }
        for i in 0..<20 { #expect(FileManager.default.createFile(atPath: "\(src)/d\(i)/new", contents: Data("new\n".utf8))) }
        let d = try store.diff(one.id, nil)
        #expect(d.changed.count == 100 && d.removed.count == 50 && d.added.count == 20, "\(d.changed.count) changed, \(d.removed.count) removed, \(d.added.count) added")
        let (_, changes) = try store.restore(one.id)
        #expect(changes.changed.count == 100 && changes.added.count == 50 && changes.removed.count == 20, "what the restore changed")
        #expect(try store.diff(one.id, nil).isEmpty, "the tree is the snapshot again")
        #expect(try String(contentsOfFile: "\(src)/d5/f0", encoding: .utf8) == "file 5/0\n")
        return store
    }

    @Test func btrfsSubvolumeSnapshots() throws {
        try onLoop(["/usr/sbin/mkfs.btrfs", "-q", "-f"]) { mnt in
            // The source is a subvolume, as a btrfs root or /var is.
            let made = try ChildProcess.run("/usr/bin/btrfs", ["subvolume", "create", "\(mnt)/src"])
            try #require(made.succeeded, "\(made.errors)")
            let f = try SnapshotFixture(in: mnt)
            let store = try f.exercise()
            #expect(store.backend == .btrfsSubvolume && store.why.contains("subvolume"))
            // Read-only: a snapshot cannot be changed by accident.
            #expect(throws: (any Error).self) { try "x".write(toFile: "\(store.tree(1))/hostname", atomically: false, encoding: .utf8) }
            _ = try ChildProcess.run("/usr/bin/btrfs", ["subvolume", "create", "\(mnt)/big"])
            #expect(try thirtyThousandFiles(in: mnt).backend == .btrfsSubvolume)
        }
    }

    /// A btrfs root as the restore point: "/" a subvolume, the store inside it made a
    /// subvolume of its own by cm-snapd, so the snapshot stays a subvolume snapshot.
    @Test func aBtrfsRootWithTheStoreInsideIt() throws {
        try onLoop(["/usr/sbin/mkfs.btrfs", "-q", "-f"]) { mnt in
            _ = try ChildProcess.run("/usr/bin/btrfs", ["subvolume", "create", "\(mnt)/root"])
            try FileManager.default.createDirectory(atPath: "\(mnt)/root/etc", withIntermediateDirectories: true)
            try "m1\n".write(toFile: "\(mnt)/root/etc/hostname", atomically: false, encoding: .utf8)
            try FileManager.default.createDirectory(atPath: "\(mnt)/root/var/lib/clustermaker", withIntermediateDirectories: true)
            let store = "\(mnt)/root/var/lib/clustermaker/snapshots"
            try SnapService.makeStore(store)
            var st = stat()
            #expect(lstat(store, &st) == 0 && st.st_ino == 256, "the store is a subvolume")
            let group = try SnapshotGroup(name: "system", paths: ["\(mnt)/root"], root: "\(store)/system")
            #expect(group.members[0].backend == .btrfsSubvolume, "\(group.members[0].why)")
            let one = try group.create()
            #expect(one.backend == .btrfsSubvolume)
            let tree = "\(store)/system/\(SnapshotGroup.key("\(mnt)/root"))/1/tree"
            #expect((try? String(contentsOfFile: "\(tree)/etc/hostname", encoding: .utf8)) == "m1\n")
            #expect((try? FileManager.default.contentsOfDirectory(atPath: "\(tree)/var/lib/clustermaker/snapshots")) == [], "the store is not in its own snapshot")
            // A directory excluded inside the subvolume still turns it into a copy.
            try FileManager.default.createDirectory(atPath: "\(mnt)/root/brick", withIntermediateDirectories: true)
            let withBrick = try SnapshotStore(dataSet: "x", source: "\(mnt)/root", root: "\(store)/x", excluding: ["\(mnt)/root/brick"])
            #expect(withBrick.backend != .btrfsSubvolume && withBrick.why.contains("left out"))
        }
    }

    @Test func xfsReflinkCopies() throws {
        try onLoop(["/usr/sbin/mkfs.xfs", "-q", "-f", "-m", "reflink=1"]) { mnt in
            let f = try SnapshotFixture(in: mnt)
            let store = try f.exercise()
            #expect(store.backend == .reflink && store.why.contains("reflink"))
            #expect(try thirtyThousandFiles(in: mnt).backend == .reflink)
        }
    }

    @Test func ext4FallsBackToHardLinksAndSaysSo() throws {
        try onLoop(["/usr/sbin/mkfs.ext4", "-q", "-F"]) { mnt in
            let f = try SnapshotFixture(in: mnt)
            let store = try f.exercise()
            #expect(store.backend == .hardlink && store.why.contains("neither a subvolume snapshot nor reflink"))
            #expect(try thirtyThousandFiles(in: mnt).backend == .hardlink)
        }
    }
}
