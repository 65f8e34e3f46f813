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

    public static func escape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for c in s.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
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
