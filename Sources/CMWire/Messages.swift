import CMTypes
import Foundation

/// Message type names: the `type` field of the envelope. The core protocol's here; each
/// daemon's in its own file (HealthMessages.swift, PxeMessages.swift, …) as extensions.
public enum MessageType {
    public static let hello = "hello"
    public static let status = "status"
    public static let subscribe = "subscribe"
}

/// Event topics a subscriber can ask for; each daemon's file adds its own.
public enum Topic {}

// MARK: Common to every daemon

/// First request on every connection.
public struct Hello: Codable, Sendable, Equatable {
    public var protocolVersion: Int
    /// Who is calling ("cmctl", "cm-lbd", …), for the daemon's log.
    public var peer: String
    public init(protocolVersion: Int = WireProtocol.version, peer: String) {
        self.protocolVersion = protocolVersion
        self.peer = peer
    }
}

public struct HelloReply: Codable, Sendable, Equatable {
    public var daemon: String
    public var version: String
    public var protocolVersion: Int
    public init(daemon: String, version: String, protocolVersion: Int = WireProtocol.version) {
        self.daemon = daemon
        self.version = version
        self.protocolVersion = protocolVersion
    }
}

/// `status`: what `cmctl status` prints for each daemon.
public struct DaemonStatus: Codable, Sendable, Equatable {
    public var daemon: String
    public var version: String
    public var pid: Int32
    public var startedAt: Date
    /// One line, the same text as the unit's STATUS=.
    public var status: String
    public init(daemon: String, version: String, pid: Int32, startedAt: Date, status: String) {
        self.daemon = daemon
        self.version = version
        self.pid = pid
        self.startedAt = startedAt
        self.status = status
    }
}

/// `subscribe`: from now on the connection also carries events of these topics.
public struct Subscribe: Codable, Sendable, Equatable {
    public var topics: [String]
    public init(topics: [String]) { self.topics = topics }
}

public struct SubscribeReply: Codable, Sendable, Equatable {
    public var topics: [String]
    public init(topics: [String]) { self.topics = topics }
}
