import Foundation

/// HTML text built by the views. Everything that comes from outside (node names, messages,
/// anything a daemon or a request says) goes in through `escape`; only the views' own markup
/// is appended raw.
public struct HTML: Sendable, CustomStringConvertible {
    public private(set) var text = ""

    public init() {}
    public init(raw: String) { text = raw }

    public var description: String { text }

    /// Appends the views' own markup.
    public mutating func raw(_ s: String) { text += s }

    /// Appends text from outside, escaped for an element's content or a quoted attribute.
    public mutating func text(_ s: String) { text += HTML.escape(s) }

    public mutating func append(_ other: HTML) { text += other.text }

    /// Byte by byte: the five characters are ASCII, and UTF-8 never uses ASCII bytes inside
    /// another character. Most text has none of them and is returned as it is (bench-web's
    /// profile had the scalar-by-scalar version at a tenth of the overview's time).
    public static func escape(_ s: String) -> String {
        guard s.utf8.contains(where: { $0 == 0x26 || $0 == 0x3c || $0 == 0x3e || $0 == 0x22 || $0 == 0x27 }) else { return s }
        var out: [UInt8] = []
        out.reserveCapacity(s.utf8.count + 16)
        for b in s.utf8 {
            switch b {
            case 0x26: out.append(contentsOf: "&amp;".utf8)
            case 0x3c: out.append(contentsOf: "&lt;".utf8)
            case 0x3e: out.append(contentsOf: "&gt;".utf8)
            case 0x22: out.append(contentsOf: "&quot;".utf8)
            case 0x27: out.append(contentsOf: "&#39;".utf8)
            default: out.append(b)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// A query-string or path component.
    public static func component(_ s: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return s.addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
    }
}

/// Times and sizes as the pages show them.
enum Format {
    static func age(_ date: Date?, now: Date = Date()) -> String {
        guard let date else { return "–" }
        let s = max(0, now.timeIntervalSince(date))
        switch s {
        case ..<1: return "now"
        case ..<90: return "\(Int(s)) s ago"
        case ..<5400: return "\(Int(s / 60)) min ago"
        case ..<172_800: return "\(Int(s / 3600)) h ago"
        default: return "\(Int(s / 86400)) d ago"
        }
    }

    static func time(_ date: Date?) -> String {
        guard let date else { return "–" }
        return date.ISO8601Format()
    }

    static func rate(_ value: Double) -> String {
        value >= 100 ? String(Int(value.rounded())) : String(format: "%.1f", value)
    }
}
