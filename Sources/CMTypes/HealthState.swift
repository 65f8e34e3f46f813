/// A check's verdict: what cm-healthd decides, stores, publishes and its followers act on.
public enum HealthState: String, Codable, Sendable, CaseIterable {
    case unknown, up, down
}
