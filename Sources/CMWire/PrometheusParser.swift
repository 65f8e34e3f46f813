import Foundation

/// One sample of the Prometheus text exposition format (version 0.0.4).
public struct PrometheusSample: Sendable, Equatable {
    public var name: String
    /// Sorted by label name.
    public var labels: [(name: String, value: String)]
    public var value: Double
    public var timestampMs: Int64?

    public init(name: String, labels: [(name: String, value: String)] = [], value: Double, timestampMs: Int64? = nil) {
        self.name = name
        self.labels = labels.sorted { $0.name < $1.name }
        self.value = value
        self.timestampMs = timestampMs
    }

    public func label(_ name: String) -> String? { labels.first { $0.name == name }?.value }

    public static func == (a: Self, b: Self) -> Bool {
        a.name == b.name && a.labels.elementsEqual(b.labels, by: { $0 == $1 })
            && (a.value == b.value || (a.value.isNaN && b.value.isNaN)) && a.timestampMs == b.timestampMs
    }
}

public struct PrometheusParseError: Error, Equatable, CustomStringConvertible {
    public var line: Int
    public var column: Int
    public var message: String
    public init(line: Int, column: Int, message: String) {
        self.line = line
        self.column = column
        self.message = message
    }
    public var description: String { "line \(line):\(column): \(message)" }
}

/// Parser for what node exporters serve. Bounded in every direction — it reads bytes from
/// the network: lines of at most 64 KiB, 64 labels a sample, `maximumSamples` samples.
public enum PrometheusTextParser {
    public static let maximumLineLength = 64 << 10
    public static let maximumLabels = 64

    public static func parse(_ bytes: [UInt8], maximumSamples: Int = 100_000) throws(PrometheusParseError) -> [PrometheusSample] {
        var samples: [PrometheusSample] = []
        var lineNumber = 0
        var start = 0
        while start < bytes.count {
            lineNumber += 1
            var end = start
            while end < bytes.count, bytes[end] != UInt8(ascii: "\n") { end += 1 }
            var lineEnd = end
            if lineEnd > start, bytes[lineEnd - 1] == UInt8(ascii: "\r") { lineEnd -= 1 }
            guard lineEnd - start <= maximumLineLength else {
                throw PrometheusParseError(line: lineNumber, column: 1, message: "line longer than \(maximumLineLength) bytes")
            }
            if let sample = try parseLine(bytes[start..<lineEnd], line: lineNumber) {
                guard samples.count < maximumSamples else {
                    throw PrometheusParseError(line: lineNumber, column: 1, message: "more than \(maximumSamples) samples")
                }
                samples.append(sample)
            }
            start = end + 1
        }
        return samples
    }

    static func isNameStart(_ c: UInt8) -> Bool {
        (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || c == UInt8(ascii: "_") || c == UInt8(ascii: ":")
    }

    static func isNameChar(_ c: UInt8) -> Bool { isNameStart(c) || (c >= 0x30 && c <= 0x39) }

    static func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 }

    /// One line: blank, a comment (# HELP, # TYPE or anything else), or a sample.
    static func parseLine(_ line: ArraySlice<UInt8>, line number: Int) throws(PrometheusParseError) -> PrometheusSample? {
        var i = line.startIndex
        let base = line.startIndex
        func fail(_ message: String) -> PrometheusParseError {
            PrometheusParseError(line: number, column: i - base + 1, message: message)
        }
        while i < line.endIndex, isSpace(line[i]) { i += 1 }
        guard i < line.endIndex, line[i] != UInt8(ascii: "#") else { return nil }

        let nameStart = i
        guard isNameStart(line[i]) else { throw fail("expected a metric name") }
        while i < line.endIndex, isNameChar(line[i]) { i += 1 }
        let name = String(decoding: line[nameStart..<i], as: UTF8.self)

        var labels: [(name: String, value: String)] = []
        if i < line.endIndex, line[i] == UInt8(ascii: "{") {
            i += 1
            while true {
                while i < line.endIndex, isSpace(line[i]) { i += 1 }
                guard i < line.endIndex else { throw fail("unterminated label set") }
                if line[i] == UInt8(ascii: "}") { i += 1; break }
                let labelStart = i
                guard isNameStart(line[i]), line[i] != UInt8(ascii: ":") else { throw fail("expected a label name") }
                while i < line.endIndex, isNameChar(line[i]), line[i] != UInt8(ascii: ":") { i += 1 }
                let labelName = String(decoding: line[labelStart..<i], as: UTF8.self)
                while i < line.endIndex, isSpace(line[i]) { i += 1 }
                guard i < line.endIndex, line[i] == UInt8(ascii: "=") else { throw fail("expected \"=\" after label \(labelName)") }
                i += 1
                while i < line.endIndex, isSpace(line[i]) { i += 1 }
                guard i < line.endIndex, line[i] == UInt8(ascii: "\"") else { throw fail("expected a quoted label value") }
                i += 1
                var value: [UInt8] = []
                var closed = false
                while i < line.endIndex {
                    let c = line[i]
                    if c == UInt8(ascii: "\"") { closed = true; i += 1; break }
                    if c == UInt8(ascii: "\\") {
                        i += 1
                        guard i < line.endIndex else { break }
                        switch line[i] {
                        case UInt8(ascii: "n"): value.append(0x0a)
                        case UInt8(ascii: "\\"): value.append(UInt8(ascii: "\\"))
                        case UInt8(ascii: "\""): value.append(UInt8(ascii: "\""))
                        default: throw fail("unknown escape \\\(Character(Unicode.Scalar(line[i])))")
                        }
                        i += 1
                        continue
                    }
                    value.append(c)
                    i += 1
                }
                guard closed else { throw fail("unterminated label value") }
                guard labels.count < maximumLabels else { throw fail("more than \(maximumLabels) labels") }
                labels.append((labelName, String(decoding: value, as: UTF8.self)))
                while i < line.endIndex, isSpace(line[i]) { i += 1 }
                guard i < line.endIndex else { throw fail("unterminated label set") }
                if line[i] == UInt8(ascii: ",") { i += 1; continue }
                guard line[i] == UInt8(ascii: "}") else { throw fail("expected \",\" or \"}\"") }
                i += 1
                break
            }
        }
        guard i < line.endIndex, isSpace(line[i]) else { throw fail("expected a space before the value") }
        while i < line.endIndex, isSpace(line[i]) { i += 1 }
        let valueStart = i
        while i < line.endIndex, !isSpace(line[i]) { i += 1 }
        guard valueStart < i, let value = parseValue(line[valueStart..<i]) else {
            i = valueStart
            throw fail("expected a number")
        }
        while i < line.endIndex, isSpace(line[i]) { i += 1 }
        var timestamp: Int64?
        if i < line.endIndex {
            let tsStart = i
            while i < line.endIndex, !isSpace(line[i]) { i += 1 }
            guard let ts = Int64(String(decoding: line[tsStart..<i], as: UTF8.self)) else {
                i = tsStart
                throw fail("expected an integer timestamp")
            }
            timestamp = ts
            while i < line.endIndex, isSpace(line[i]) { i += 1 }
            guard i == line.endIndex else { throw fail("unexpected text after the timestamp") }
        }
        return PrometheusSample(name: name, labels: labels, value: value, timestampMs: timestamp)
    }

    static func parseValue(_ text: ArraySlice<UInt8>) -> Double? {
        guard text.count <= 64 else { return nil }
        let s = String(decoding: text, as: UTF8.self)
        switch s {
        case "NaN": return .nan
        case "+Inf", "Inf": return .infinity
        case "-Inf": return -.infinity
        default:
            // Double(String) also takes "nan", "inf", hex floats: the format allows none of them.
            guard s.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "e")
                || $0 == UInt8(ascii: "E") || $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "-") }) else { return nil }
            return Double(s)
        }
    }
}
