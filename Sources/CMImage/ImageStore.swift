import CMTypes
import Foundation
import Glibc

/// What is known of one published revision; kept beside it as image.json.
public struct ImageRevisionInfo: Codable, Sendable, Equatable {
    public var name: String
    public var revision: Int
    /// The revision this one was made from ("base@2"), for `--from` and `image shell`.
    public var from: String?
    public var suite: String
    public var packages: [String]
    public var created: Date
    public var createdBy: String
    /// "build", "shell", …: how it was made.
    public var how: String
    public var note: String?
    /// The kernel version of vmlinuz ("6.1.0-28-amd64").
    public var kernel: String?
    public var seconds: Double?
    /// Its NFS export's id, given once at publishing and never reused: file handles carry it.
    public var exportId: Int?

    public init(name: String, revision: Int = 0, from: String? = nil, suite: String, packages: [String], created: Date = Date(),
                createdBy: String, how: String, note: String? = nil, kernel: String? = nil, seconds: Double? = nil) {
        self.name = name
        self.revision = revision
        self.from = from
        self.suite = suite
        self.packages = packages
        self.created = created
        self.createdBy = createdBy
        self.how = how
        self.note = note
        self.kernel = kernel
        self.seconds = seconds
    }

    public var ref: ImageRef { ImageRef(name: name, revision: revision) }
}

public struct ImageStoreError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The published images, one directory per image and one per revision inside it:
///
///     IMAGES/NAME/REV/image.json   what it is (ImageRevisionInfo)
///     IMAGES/NAME/REV/build.log    how it was made
///     IMAGES/NAME/REV/vmlinuz      the kernel and initramfs nodes boot,
///     IMAGES/NAME/REV/initrd.img   copied out of root/boot
///     IMAGES/NAME/REV/root/        the root filesystem, exported read-only over NFS
///
/// A revision appears by one rename of a complete directory, and is never written again:
/// nothing a node runs changes under it. A removed one is renamed away first, then deleted.
/// An image without revisions (vmlinuz and initrd.img directly in IMAGES/NAME) is a
/// kernel-only image: it boots, with no shared root.
public struct ImageStore: Sendable {
    public let directory: String

    public init(directory: String) {
        self.directory = directory
    }

    public func path(_ name: String) -> String { "\(directory)/\(name)" }
    public func path(_ name: String, _ revision: Int) -> String { "\(directory)/\(name)/\(revision)" }

    /// Every image name, sorted.
    public func images() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { ImageRef.isName($0) && isDirectory(path($0)) && (!revisionNumbers($0).isEmpty || isKernelOnly($0)) }.sorted()
    }

    /// The published revision numbers of an image, ascending.
    public func revisionNumbers(_ name: String) -> [Int] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: path(name))) ?? []
        return entries.compactMap { e -> Int? in
            guard let n = Int(e), n > 0, String(n) == e, FileManager.default.fileExists(atPath: "\(path(name))/\(e)/image.json") else { return nil }
            return n
        }.sorted()
    }

    public func info(_ name: String, _ revision: Int) throws -> ImageRevisionInfo {
        let file = "\(path(name, revision))/image.json"
        guard let data = FileManager.default.contents(atPath: file) else { throw ImageStoreError("no revision \(revision) of image \"\(name)\"") }
        do {
            return try Self.decoder.decode(ImageRevisionInfo.self, from: data)
        } catch {
            throw ImageStoreError("\(file): not an image description: \(error)")
        }
    }

    public func revisions(_ name: String) -> [ImageRevisionInfo] {
        revisionNumbers(name).compactMap { try? info(name, $0) }
    }

    /// A kernel-only image: vmlinuz directly in its directory.
    public func isKernelOnly(_ name: String) -> Bool {
        FileManager.default.fileExists(atPath: "\(path(name))/vmlinuz") && revisionNumbers(name).isEmpty
    }

    public func exists(_ name: String) -> Bool { isDirectory(path(name)) }

    /// The revision `ref` means now: its pinned one, else the newest. Nil for a kernel-only image.
    public func resolve(_ ref: ImageRef) throws -> Int? {
        let numbers = revisionNumbers(ref.name)
        if let r = ref.revision {
            guard numbers.contains(r) else {
                throw ImageStoreError(numbers.isEmpty ? "no image \"\(ref.name)\"" : "image \"\(ref.name)\" has no revision \(r) (it has \(Self.ranges(numbers)))")
            }
            return r
        }
        if let last = numbers.last { return last }
        if isKernelOnly(ref.name) { return nil }
        throw ImageStoreError("no image \"\(ref.name)\" in \(directory)")
    }

    /// The directory holding the files a node boots from for `ref`.
    public func bootDirectory(_ ref: ImageRef) throws -> String {
        try resolve(ref).map { path(ref.name, $0) } ?? path(ref.name)
    }

    /// A new, empty directory beside the revisions (same filesystem, so `publish` is a rename).
    public func incoming(_ name: String) throws -> String {
        guard ImageRef.isName(name) else { throw ImageStoreError("\"\(name)\" is not a valid image name (\(ImageRef.nameRule))") }
        try FileManager.default.createDirectory(atPath: path(name), withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        let dir = "\(path(name))/.incoming-\(getpid())-\(UInt32.random(in: 0...UInt32.max))@\(Self.host)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o755])
        return dir
    }

    /// Makes `staged` (from `incoming`) the image's next revision and returns its number.
    /// Held under the image's lock, so two publishers get two numbers.
    @discardableResult
    public func publish(_ staged: String, info: ImageRevisionInfo) throws -> ImageRevisionInfo {
        try withLock(info.name, file: ".publish.lock") {
            var info = info
            // Never a number given before, even to a removed revision: "base@3" means one thing.
            let counter = "\(path(info.name))/.last-revision"
            let given = (try? String(contentsOfFile: counter, encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
            info.revision = max(revisionNumbers(info.name).last ?? 0, given) + 1
            info.exportId = try nextExportId()
            try "\(info.revision)\n".write(toFile: counter, atomically: true, encoding: .utf8)
            let json = try Self.encoder.encode(info)
            guard FileManager.default.createFile(atPath: "\(staged)/image.json", contents: json, attributes: [.posixPermissions: 0o644]) else {
                throw ImageStoreError("\(staged)/image.json: cannot write")
            }
            guard rename(staged, path(info.name, info.revision)) == 0 else {
                throw ImageStoreError("publishing \(staged) as \(path(info.name, info.revision)): \(String(cString: strerror(errno)))")
            }
            return info
        }
    }

    /// Export ids: 1 is /shared, revisions count up from 2. The highest given is kept in
    /// IMAGES/.export-ids so a removed revision's id is not given again.
    func nextExportId() throws -> Int {
        let file = "\(directory)/.export-ids"
        let fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SystemError("opening \(file)") }
        defer { close(fd) }
        guard flock(fd, LOCK_EX) == 0 else { throw SystemError("locking \(file)") }
        var buf = [UInt8](repeating: 0, count: 32)
        let n = pread(fd, &buf, 31, 0)
        let stored = n > 0 ? Int(String(decoding: buf[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) ?? 1 : 1
        let used = images().flatMap { revisions($0) }.compactMap(\.exportId).max() ?? 1
        let id = max(stored, used) + 1
        guard id <= 65535 else { throw ImageStoreError("no NFS export id left (ganesha allows 65535)") }
        let text = Array("\(id)\n".utf8)
        guard ftruncate(fd, 0) == 0, pwrite(fd, text, text.count, 0) == text.count, fsync(fd) == 0 else { throw SystemError("writing \(file)") }
        return id
    }

    /// Removes one revision, or the whole image with `revision` nil. Renamed away first so no
    /// listing shows half of it.
    public func remove(_ name: String, revision: Int?) throws {
        let victim = revision.map { path(name, $0) } ?? path(name)
        guard isDirectory(victim) else { throw ImageStoreError(revision.map { "image \"\(name)\" has no revision \($0)" } ?? "no image \"\(name)\"") }
        let doomed = "\(directory)/.removing-\(name)-\(revision ?? 0)-\(getpid())@\(Self.host)"
        guard rename(victim, doomed) == 0 else { throw ImageStoreError("removing \(victim): \(String(cString: strerror(errno)))") }
        try FileManager.default.removeItem(atPath: doomed)
    }

    /// This host's name: the store is shared by the masters (it is on the cluster volume), and
    /// a process id means something only on the host that wrote it.
    static let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "localhost"

    /// Deletes what an interrupted build or removal on this host left behind: ".incoming-PID-N@HOST"
    /// and ".removing-NAME-REV-PID@HOST" whose process is gone. Another host's are left alone.
    public func sweep() {
        func deadHere(_ entry: String, prefix: String) -> Bool {
            guard entry.hasPrefix(prefix), let at = entry.lastIndex(of: "@"), entry[entry.index(after: at)...] == Self.host else { return false }
            let fields = entry[entry.index(entry.startIndex, offsetBy: prefix.count)..<at].split(separator: "-")
            let pid = (prefix == ".incoming-" ? fields.first : fields.last).flatMap { Int32($0) } ?? 0
            return pid <= 0 || (kill(pid, 0) != 0 && errno == ESRCH)
        }
        let top = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for name in top where ImageRef.isName(name) {
            for entry in ((try? FileManager.default.contentsOfDirectory(atPath: path(name))) ?? []) where deadHere(entry, prefix: ".incoming-") {
                try? FileManager.default.removeItem(atPath: "\(path(name))/\(entry)")
            }
        }
        for entry in top where deadHere(entry, prefix: ".removing-") {
            try? FileManager.default.removeItem(atPath: "\(directory)/\(entry)")
        }
    }

    /// Runs `body` holding an exclusive lock on the image (flock on IMAGES/NAME/.lock, which a
    /// build or shell holds throughout; publishing takes its own, shorter one).
    public func withLock<T>(_ name: String, wait: Bool = true, file: String = ".lock", _ body: () throws -> T) throws -> T {
        try FileManager.default.createDirectory(atPath: path(name), withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        let fd = open("\(path(name))/\(file)", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SystemError("opening \(path(name))/\(file)") }
        defer { close(fd) }
        guard flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB)) == 0 else {
            throw ImageStoreError("image \"\(name)\" is busy: another build or shell holds \(path(name))/.lock")
        }
        return try body()
    }

    /// "1-3, 5": revision numbers as an admin reads them.
    public static func ranges(_ numbers: [Int]) -> String {
        var parts: [String] = []
        var i = 0
        while i < numbers.count {
            var j = i
            while j + 1 < numbers.count, numbers[j + 1] == numbers[j] + 1 { j += 1 }
            parts.append(i == j ? "\(numbers[i])" : "\(numbers[i])-\(numbers[j])")
            i = j + 1
        }
        return parts.isEmpty ? "none" : parts.joined(separator: ", ")
    }

    private func isDirectory(_ p: String) -> Bool {
        var d: ObjCBool = false
        return FileManager.default.fileExists(atPath: p, isDirectory: &d) && d.boolValue
    }

    static var encoder: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        e.dateEncodingStrategy = .iso8601
        return e
    }

    static var decoder: JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .iso8601
        return d
    }
}
