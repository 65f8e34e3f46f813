import Foundation

/// A small XML reader for the `gluster --xml` output: elements, their text and children.
/// Attributes, comments, processing instructions and DOCTYPEs are skipped. Pure and total:
/// any input gives a tree or an error, never a crash (fuzzed by fuzz_gluster_xml).
public struct XMLTree: Sendable, Equatable {
    public var name: String
    public var text: String
    public var children: [XMLTree]

    public init(name: String, text: String = "", children: [XMLTree] = []) {
        self.name = name
        self.text = text
        self.children = children
    }

    public struct ParseError: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    /// The first child named `name`.
    public func child(_ name: String) -> XMLTree? { children.first { $0.name == name } }

    /// The elements at a slash-separated path below this one ("volInfo/volumes/volume").
    public func all(_ path: String) -> [XMLTree] {
        var level = [self]
        for part in path.split(separator: "/") { level = level.flatMap { $0.children.filter { $0.name == part } } }
        return level
    }

    /// The trimmed text of the first element at `path`.
    public func value(_ path: String) -> String? { all(path).first.map { $0.text.trimmed } }

    /// Deeper than this is not gluster's output; it also bounds the recursion.
    static let maxDepth = 64

    public static func parse(_ input: String) throws -> XMLTree {
        var p = Parser(bytes: Array(input.utf8))
        p.skipMisc()
        guard p.peek == UInt8(ascii: "<") else { throw ParseError(description: "not XML: \(String(input.prefix(80)).trimmed)") }
        let root = try p.element(depth: 0)
        return root
    }

    struct Parser {
        let bytes: [UInt8]
        var i = 0

        var peek: UInt8? { i < bytes.count ? bytes[i] : nil }

        func starts(_ s: String) -> Bool {
            let u = Array(s.utf8)
            return i + u.count <= bytes.count && Array(bytes[i..<(i + u.count)]) == u
        }

        mutating func skip(until end: String) throws {
            while i < bytes.count, !starts(end) { i += 1 }
            guard i < bytes.count else { throw ParseError(description: "unterminated \(end) at end of input") }
            i += end.utf8.count
        }

        /// Whitespace, <?…?>, <!--…-->, <!DOCTYPE …>.
        mutating func skipMisc() {
            while let c = peek {
                if c == 0x20 || c == 0x0a || c == 0x0d || c == 0x09 { i += 1; continue }
                do {
                    if starts("<?") { try skip(until: "?>"); continue }
                    if starts("<!--") { try skip(until: "-->"); continue }
                    if starts("<!") { try skip(until: ">"); continue }
                } catch { i = bytes.count }
                return
            }
        }

        static func isNameByte(_ c: UInt8) -> Bool {
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c == 0x5f || c == 0x2d || c == 0x2e || c == 0x3a || c >= 0x80
        }

        mutating func name() throws -> String {
            let start = i
            while let c = peek, Self.isNameByte(c) { i += 1 }
            guard i > start else { throw ParseError(description: "expected a name at byte \(i)") }
            return String(decoding: bytes[start..<i], as: UTF8.self)
        }

        /// At "<": one element with everything inside it.
        mutating func element(depth: Int) throws -> XMLTree {
            guard depth < XMLTree.maxDepth else { throw ParseError(description: "nested deeper than \(XMLTree.maxDepth)") }
            i += 1
            var node = XMLTree(name: try name())
            // Attributes: skipped, quoted values may hold ">".
            while let c = peek, c != UInt8(ascii: ">"), !starts("/>") {
                if c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") {
                    i += 1
                    while let d = peek, d != c { i += 1 }
                    guard peek != nil else { throw ParseError(description: "unterminated attribute value") }
                }
                i += 1
            }
            guard peek != nil else { throw ParseError(description: "unterminated tag <\(node.name)") }
            if starts("/>") {
                i += 2
                return node
            }
            i += 1
            var text: [UInt8] = []
            while true {
                guard let c = peek else { throw ParseError(description: "<\(node.name)> is not closed") }
                if c != UInt8(ascii: "<") {
                    text.append(c)
                    i += 1
                    continue
                }
                if starts("</") {
                    i += 2
                    let closing = try name()
                    guard closing == node.name else { throw ParseError(description: "</\(closing)> closes <\(node.name)>") }
                    while let d = peek, d != UInt8(ascii: ">") { i += 1 }
                    guard peek != nil else { throw ParseError(description: "unterminated </\(closing)") }
                    i += 1
                    node.text = Self.decode(text)
                    return node
                }
                if starts("<![CDATA[") {
                    i += 9
                    let start = i
                    try skip(until: "]]>")
                    text += bytes[start..<(i - 3)]
                    continue
                }
                if starts("<!--") || starts("<?") {
                    try skip(until: starts("<!--") ? "-->" : "?>")
                    continue
                }
                node.children.append(try element(depth: depth + 1))
            }
        }

        static func decode(_ bytes: [UInt8]) -> String {
            var s = String(decoding: bytes, as: UTF8.self)
            guard s.contains("&") else { return s }
            for (entity, char) in [("&lt;", "<"), ("&gt;", ">"), ("&quot;", "\""), ("&apos;", "'"), ("&amp;", "&")] {
                s = s.replacingOccurrences(of: entity, with: char)
            }
            return s
        }
    }
}

extension String {
    var trimmed: String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s = s.dropFirst() }
        while let l = s.last, l.isWhitespace { s = s.dropLast() }
        return String(s)
    }
}
