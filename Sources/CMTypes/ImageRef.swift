/// What a group or node boots: an image name, optionally pinned to one revision
/// ("compute" boots the latest revision, "compute@3" revision 3).
public struct ImageRef: Sendable, Hashable, CustomStringConvertible {
    public var name: String
    public var revision: Int?

    public init(name: String, revision: Int? = nil) {
        self.name = name
        self.revision = revision
    }

    /// Parses "NAME" or "NAME@REV"; nil for anything else (a `/`, `..`, an empty name, a
    /// revision that is not a positive number).
    public init?(_ text: String) {
        let parts = text.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count <= 2, Self.isName(String(parts[0])) else { return nil }
        name = String(parts[0])
        if parts.count == 2 {
            guard let r = Int(parts[1]), r > 0, String(r) == parts[1] else { return nil }
            revision = r
        }
    }

    public var description: String { revision.map { "\(name)@\($0)" } ?? name }

    /// An image name: 1-32 of A-Z, a-z, 0-9, "_", "-", not starting with "-" (it would read as
    /// an option) — so never a path: no "/", no "..", no hidden file.
    public static func isName(_ s: String) -> Bool {
        (1...32).contains(s.utf8.count) && s.utf8.first != UInt8(ascii: "-")
            && s.utf8.allSatisfy { c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c == UInt8(ascii: "_") || c == UInt8(ascii: "-")
            }
    }

    public static let nameRule = "1-32 of A-Z, a-z, 0-9, \"_\", \"-\", not starting with \"-\""
}
