import Foundation

/// Left-aligned columns separated by two spaces, like `ip -br` or `systemctl list-units`.
struct Table {
    var header: [String]
    var rows: [[String]] = []

    init(_ header: String...) { self.header = header }

    mutating func add(_ row: String...) { rows.append(row) }

    func render() -> String {
        let all = [header] + rows
        var widths = [Int](repeating: 0, count: header.count)
        for row in all {
            for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) }
        }
        return all.map { row in
            row.enumerated().map { i, cell in
                i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}

enum Format {
    static func age(since date: Date?, now: Date = Date()) -> String {
        guard let date else { return "-" }
        let seconds = max(0, Int(now.timeIntervalSince(date)))
        return DurationTextShort.format(seconds) + " ago"
    }

    static func time(_ date: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.dateFormat = "yyyy-MM-dd HH:mm:ss"
        return f.string(from: date)
    }

    /// "45s", "2m05s", "1h02m": elapsed time for progress lines.
    static func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        if s < 60 { return "\(s)s" }
        if s < 3600 { return String(format: "%dm%02ds", s / 60, s % 60) }
        return String(format: "%dh%02dm", s / 3600, s % 3600 / 60)
    }

    static func number(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if abs(v) >= 1e9 { return String(format: "%.2fG", v / 1e9) }
        if abs(v) >= 1e6 { return String(format: "%.2fM", v / 1e6) }
        if abs(v) >= 1e4 { return String(format: "%.1fk", v / 1e3) }
        return String(format: "%.2f", v)
    }
}

enum DurationTextShort {
    /// "3s", "4m", "2h", "5d": the largest unit only, for tables.
    static func format(_ seconds: Int) -> String {
        switch seconds {
        case ..<60: return "\(seconds)s"
        case ..<3600: return "\(seconds / 60)m"
        case ..<86400: return "\(seconds / 3600)h"
        default: return "\(seconds / 86400)d"
        }
    }
}
