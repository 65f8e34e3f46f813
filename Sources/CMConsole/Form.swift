import Foundation

/// application/x-www-form-urlencoded bodies and the other small texts a browser sends.
public enum Form {
    /// The first value of each field; fields that do not decode are left out. At most 64 fields.
    public static func parse(_ text: String) -> [String: String] {
        var out: [String: String] = [:]
        for pair in text.split(separator: "&").prefix(64) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let key = decode(parts[0]), out[key] == nil, let value = parts.count > 1 ? decode(parts[1]) : "" else { continue }
            out[key] = value
        }
        return out
    }

    static func decode(_ s: Substring) -> String? {
        s.replacingOccurrences(of: "+", with: " ").removingPercentEncoding
    }

    /// Where a login may send the browser afterwards: a path of this site, never another site
    /// (`//host`, `/\host` and schemes are refused).
    public static func safeNext(_ next: String?) -> String {
        guard let next, next.hasPrefix("/"), !next.hasPrefix("//"), !next.hasPrefix("/\\"), next.count <= 512,
              next.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7f }) else { return "/" }
        return next
    }

}
