import Foundation
import HummingbirdBcrypt

/// The console's accounts: webd.toml's users_file, `NAME:BCRYPT-HASH` a line, the format
/// `htpasswd -B` writes (its `$2y$` is bcrypt's `$2b$` under another name). Blank lines and
/// `#` comments are skipped; anything else that is not such a line is an error naming it.
public struct UsersFile: Sendable, Equatable {
    public var hashes: [String: String]

    public init(hashes: [String: String]) { self.hashes = hashes }

    public struct Problem: Error, CustomStringConvertible, Equatable {
        public var path: String
        public var line: Int
        public var message: String
        public var description: String { line > 0 ? "\(path):\(line): \(message)" : "\(path): \(message)" }
    }

    public static func parse(_ text: String, path: String) throws(Problem) -> UsersFile {
        var hashes: [String: String] = [:]
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let colon = line.firstIndex(of: ":") else {
                throw Problem(path: path, line: index + 1, message: "not NAME:BCRYPT-HASH")
            }
            let name = String(line[..<colon]), hash = String(line[line.index(after: colon)...])
            guard isUserName(name) else {
                throw Problem(path: path, line: index + 1, message: "\"\(name.prefix(64))\" is not a user name (1-32 of a-z, A-Z, 0-9, \".\", \"_\", \"-\")")
            }
            guard isBcrypt(hash) else {
                throw Problem(path: path, line: index + 1, message: "user \"\(name)\": not a bcrypt hash ($2b$ or $2y$, 60 characters; make one with cmctl web passwd)")
            }
            guard hashes[name] == nil else { throw Problem(path: path, line: index + 1, message: "user \"\(name)\" is listed twice") }
            hashes[name] = hash
        }
        return UsersFile(hashes: hashes)
    }

    public static func load(_ path: String) throws(Problem) -> UsersFile {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw Problem(path: path, line: 0, message: FileManager.default.fileExists(atPath: path) ? "cannot read it" : "no such file (add a user with cmctl web passwd NAME)")
        }
        return try parse(text, path: path)
    }

    /// Whether `password` is `user`'s. Slow by design (bcrypt): call it off the event loops.
    /// An unknown user costs the same as a known one, so that timing tells no names.
    public func verify(user: String, password: String) -> Bool {
        let hash = hashes[user] ?? Self.decoy
        let ok = Bcrypt.verify(password, hash: Self.normalized(hash))
        return ok && hashes[user] != nil
    }

    /// `NAME:HASH` for `password` at `cost` (2^cost rounds).
    public static func line(user: String, password: String, cost: UInt8 = 12) -> String {
        "\(user):\(Bcrypt.hash(password, cost: cost))"
    }

    /// Replaces or adds `user`'s line in a users file's text, keeping every other line as it is.
    public static func setting(_ text: String, user: String, line newLine: String) -> String {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        if let i = lines.firstIndex(where: { $0.trimmingCharacters(in: .whitespaces).hasPrefix(user + ":") }) {
            lines[i] = newLine
        } else {
            lines.append(newLine)
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// A users file's text without `user`'s line.
    public static func removing(_ text: String, user: String) -> String {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var kept = lines.filter { !$0.trimmingCharacters(in: .whitespaces).hasPrefix(user + ":") }
        if kept.last == "" { kept.removeLast() }
        return kept.isEmpty ? "" : kept.joined(separator: "\n") + "\n"
    }

    public static func isUserName(_ s: String) -> Bool {
        (1...32).contains(s.utf8.count) && !s.hasPrefix("-") && s.utf8.allSatisfy {
            (0x61...0x7a).contains($0) || (0x41...0x5a).contains($0) || (0x30...0x39).contains($0) || $0 == 0x2e || $0 == 0x5f || $0 == 0x2d
        }
    }

    static func isBcrypt(_ s: String) -> Bool {
        let u = Array(s.utf8)
        guard u.count == 60, s.hasPrefix("$2b$") || s.hasPrefix("$2y$") || s.hasPrefix("$2a$"), u[6] == UInt8(ascii: "$") else { return false }
        guard let cost = Int(String(decoding: u[4..<6], as: UTF8.self)), (4...31).contains(cost) else { return false }
        return u[7...].allSatisfy { (0x41...0x5a).contains($0) || (0x61...0x7a).contains($0) || (0x30...0x39).contains($0) || $0 == 0x2e || $0 == 0x2f }
    }

    /// htpasswd writes `$2y$`; the OpenBSD code here reads `$2b$`, the same algorithm.
    static func normalized(_ hash: String) -> String {
        hash.hasPrefix("$2y$") ? "$2b$" + hash.dropFirst(4) : hash
    }

    /// A valid hash of nothing anyone types, checked against when the user is unknown.
    static let decoy = "$2b$12$C6UzMDM.H6dfI/f/IKxGhuS0iW0S8lFVXWPb2mBoQ2FzhP1xUJD4G"
}
