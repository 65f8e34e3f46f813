/// A lexical check run before TOMLKit sees a file. toml++ (inside TOMLKit 0.6.0) asserts —
/// aborting the process — on some invalid input, such as a non-ASCII character in a table
/// header (`[[é]]`, found by fuzzing). TOML 1.0 allows non-ASCII text only inside strings and
/// comments and control characters nowhere but tab, so those two rules, checked here with a
/// small string/comment tokenizer, keep such input away from the parser. A third rule covers
/// the other abort fuzzing found: a table header whose first key does not start with a key
/// character (`[ `b]`); later keys in a header are checked by toml++ itself.
enum TOMLPrecheck {
    enum Mode { case normal, comment, basic, literal, multilineBasic, multilineLiteral }

    /// The first offending character's position and a message, or nil when the text is clean.
    static func firstProblem(in text: String) -> (line: Int, column: Int, message: String)? {
        let scalars = Array(text.unicodeScalars)
        var mode = Mode.normal
        var line = 1, column = 0
        var i = 0
        // Nesting of arrays and inline tables, which may span lines: a "[" that starts a line
        // inside one is a value, not a table header.
        var depth = 0
        var atLineStart = true
        var headerLine = false
        func next(_ k: Int) -> Unicode.Scalar? { i + k < scalars.count ? scalars[i + k] : nil }
        while i < scalars.count {
            let c = scalars[i]
            column += 1
            if c == "\n" {
                line += 1
                column = 0
                atLineStart = true
                headerLine = false
                if mode == .comment || mode == .basic || mode == .literal { mode = .normal }
                i += 1
                continue
            }
            let isControl = c.value < 0x20 && c != "\t" && !(c == "\r" && next(1) == "\n") || c.value == 0x7f
            if isControl {
                return (line, column, "control character U+\(String(c.value, radix: 16, uppercase: true).leftPadded(to: 4)) is not allowed")
            }
            if c == "\u{FFFD}" {
                return (line, column, "invalid UTF-8")
            }
            switch mode {
            case .normal:
                if atLineStart, c != " ", c != "\t" {
                    atLineStart = false
                    if depth == 0, c == "[" {
                        headerLine = true
                        var k = 1
                        if next(k) == "[" { k += 1 }
                        while next(k) == " " || next(k) == "\t" { k += 1 }
                        if let first = next(k), !(first.isASCII && (TOMLPositions.isBare(UInt8(first.value)) || first == "\"" || first == "'")) {
                            return (line, column + k, "a table header must start with a key")
                        }
                    }
                }
                if !headerLine {
                    if c == "[" || c == "{" { depth += 1 } else if c == "]" || c == "}" { depth = max(0, depth - 1) }
                }
                if c == "#" {
                    mode = .comment
                } else if c == "\"" {
                    if next(1) == "\"", next(2) == "\"" { mode = .multilineBasic; i += 2; column += 2 } else { mode = .basic }
                } else if c == "'" {
                    if next(1) == "'", next(2) == "'" { mode = .multilineLiteral; i += 2; column += 2 } else { mode = .literal }
                } else if !c.isASCII {
                    return (line, column, "non-ASCII character \"\(Character(c))\" outside a string or comment (keys must be ASCII or quoted)")
                }
            case .comment:
                break
            case .basic:
                if c == "\\" { i += 1; column += 1 } else if c == "\"" { mode = .normal }
            case .literal:
                if c == "'" { mode = .normal }
            case .multilineBasic:
                if c == "\\", next(1) != "\n" { i += 1; column += 1 } else if c == "\"", next(1) == "\"", next(2) == "\"" { mode = .normal; i += 2; column += 2 }
            case .multilineLiteral:
                if c == "'", next(1) == "'", next(2) == "'" { mode = .normal; i += 2; column += 2 }
            }
            i += 1
        }
        return nil
    }
}

extension String {
    func leftPadded(to width: Int) -> String { count >= width ? self : String(repeating: "0", count: width - count) + self }
}
