/// Where a requested file name may lead, decided on its text alone (the shell then opens it
/// without following symlinks out of the root): relative, no "..", no NUL, no backslash
/// tricks. Leading "/" is refused, as an absolute path outside the boot root would be.
public enum TFTPPath {
    public enum Refusal: Error, Equatable, Sendable, CustomStringConvertible {
        case absolute, parentDirectory, badCharacter, empty

        public var description: String {
            switch self {
            case .absolute: "absolute path"
            case .parentDirectory: "\"..\" in the path"
            case .badCharacter: "NUL, backslash or control character in the path"
            case .empty: "empty path"
            }
        }
    }

    /// The path's components, checked; join them under the boot root.
    public static func components(of requested: String) throws(Refusal) -> [String] {
        guard !requested.isEmpty else { throw .empty }
        guard !requested.hasPrefix("/") else { throw .absolute }
        guard !requested.utf8.contains(where: { $0 < 0x20 || $0 == 0x7f || $0 == UInt8(ascii: "\\") }) else { throw .badCharacter }
        let parts = requested.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        guard !parts.contains("..") else { throw .parentDirectory }
        let kept = parts.filter { $0 != "." }
        guard !kept.isEmpty else { throw .empty }
        return kept
    }
}
