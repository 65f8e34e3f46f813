/// One problem in a config file, located as precisely as the source allows.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public var file: String
    /// 0 when the problem is with the file as a whole (missing, unreadable).
    public var line: Int
    public var column: Int
    /// Where in the document: `check "web": port`, `metrics: interval`, or nil.
    public var key: String?
    public var message: String

    public init(file: String, line: Int, column: Int, key: String?, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.key = key
        self.message = message
    }

    /// `FILE:LINE:COLUMN: KEYPATH: MESSAGE`, the form compilers use, so editors can jump to it.
    public var description: String {
        let place = line > 0 ? "\(file):\(line):\(column)" : file
        return key.map { "\(place): \($0): \(message)" } ?? "\(place): \(message)"
    }
}

/// Every problem found in one load, sorted by file and line; printed one per line.
public struct ConfigErrors: Error, Sendable, Equatable, CustomStringConvertible {
    public var errors: [ConfigError]

    public init(_ errors: [ConfigError]) {
        self.errors = errors.sorted { ($0.file, $0.line, $0.column) < ($1.file, $1.line, $1.column) }
    }

    public var description: String { errors.map(\.description).joined(separator: "\n") }
}
