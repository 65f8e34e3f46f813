/// Writes the Prometheus text exposition format, version 0.0.4 (what node exporters serve and
/// node-exporter's textfile collector reads): one `# HELP` and one `# TYPE` line per metric
/// family, then its samples, label values escaped. The daemons render their counters with it
/// (`cmctl lb metrics`), and so will cm-webd's `/metrics` for the whole suite.
public struct PrometheusText: Sendable {
    public enum Kind: String, Sendable {
        /// Only goes up (restarts at zero with the daemon); its name ends in `_total`.
        case counter
        case gauge
    }

    public struct Sample: Sendable {
        public var labels: [(name: String, value: String)]
        public var value: Double
        public init(_ labels: [(name: String, value: String)], _ value: Double) {
            self.labels = labels
            self.value = value
        }
        public init(_ labels: [(name: String, value: String)], _ value: Int) { self.init(labels, Double(value)) }
    }

    public private(set) var text = ""
    private var names: Set<String> = []

    public init() {}

    /// Appends the family `name` with its samples. A family that has no samples still says
    /// what it is (a frontend-less daemon shows which metrics it has). Names follow the
    /// format's rule `[a-zA-Z_:][a-zA-Z0-9_:]*`, counters end in `_total` and each name comes
    /// once: the callers are the daemons' own code, so a violation is a programming error.
    public mutating func family(_ name: String, _ kind: Kind, help: String, _ samples: [Sample]) {
        precondition(Self.isValidName(name), "metric name \(name)")
        precondition(kind != .counter || name.hasSuffix("_total"), "counter \(name) must end in _total")
        precondition(names.insert(name).inserted, "metric \(name) twice")
        text += "# HELP \(name) \(Self.escapeHelp(help))\n# TYPE \(name) \(kind.rawValue)\n"
        for sample in samples {
            text += name
            if !sample.labels.isEmpty {
                text += "{"
                text += sample.labels.map { label in
                    precondition(Self.isValidName(label.name) && !label.name.contains(":"), "label name \(label.name)")
                    return "\(label.name)=\"\(Self.escapeLabel(label.value))\""
                }.joined(separator: ",")
                text += "}"
            }
            text += " \(Self.format(sample.value))\n"
        }
    }

    /// Integral values as integers (counters read as counts), the rest as Swift prints them;
    /// the format's spellings of the IEEE special values.
    static func format(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 9.0e15 { return String(Int64(value)) }
        return "\(value)"
    }

    /// In label values a backslash, a double quote and a line feed are escaped.
    static func escapeLabel(_ value: String) -> String { escape(value, quote: true) }

    /// In help texts a backslash and a line feed are.
    static func escapeHelp(_ text: String) -> String { escape(text, quote: false) }

    private static func escape(_ text: String, quote: Bool) -> String {
        var out = ""
        for c in text.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\"" where quote: out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    static func isValidName(_ name: String) -> Bool {
        guard let first = name.utf8.first, !(first >= 0x30 && first <= 0x39) else { return false }
        return name.utf8.allSatisfy { c in
            (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c == UInt8(ascii: "_") || c == UInt8(ascii: ":")
        }
    }
}
