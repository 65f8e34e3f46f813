import CMTypes
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// What `gluster volume info` and `volume status` say of one volume.
public struct GlusterVolume: Sendable, Equatable, Codable {
    public var name: String
    public var id: String
    /// "Created", "Started", "Stopped".
    public var status: String
    /// "Distribute", "Replicate", …
    public var type: String
    public var replicaCount: Int
    public var arbiterCount: Int
    public var bricks: [String]
    public var options: [String: String]
}

public struct GlusterBrickStatus: Sendable, Equatable, Codable {
    public var brick: String
    public var online: Bool
    public var pid: Int?
    public var port: Int?
}

public struct GlusterError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ d: String) { description = d }
}

/// The `gluster` command with --xml: GlusterFS's own management interface, parsed. Pure
/// parsing lives in the static functions (tested with glusterd's real output); `run` talks
/// to glusterd through its control socket.
public struct GlusterCLI: Sendable {
    public var socket: String
    public var command: String

    public init(socket: String, command: String = "/usr/sbin/gluster") {
        self.socket = socket
        self.command = command
    }

    /// Runs `gluster ARGS --xml`; returns the XML document, or throws glusterd's own error text.
    public func run(_ args: [String], timeout: TimeInterval = 120) throws -> XMLDocument {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: command)
        p.arguments = ["--glusterd-sock=\(socket)", "--mode=script", "--xml", "--timeout=\(Int(timeout))"] + args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        do { try p.run() } catch { throw GlusterError("cannot run \(command): \(error)") }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errText = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        guard let doc = try? XMLDocument(data: data) else {
            let text = (String(decoding: data, as: UTF8.self) + errText).trimmingCharacters(in: .whitespacesAndNewlines)
            throw GlusterError("gluster \(args.joined(separator: " ")): \(text.isEmpty ? "exit status \(p.terminationStatus)" : text)")
        }
        try Self.check(doc, args)
        return doc
    }

    /// glusterd's opRet/opErrstr: non-zero is a failure with its text.
    static func check(_ doc: XMLDocument, _ args: [String]) throws {
        let ret = Int(Self.text(doc, "/cliOutput/opRet") ?? "0") ?? 0
        if ret != 0 {
            let why = Self.text(doc, "/cliOutput/opErrstr").flatMap { $0.isEmpty ? nil : $0 } ?? "failed (opRet \(ret))"
            throw GlusterError("gluster \(args.joined(separator: " ")): \(why)")
        }
    }

    static func text(_ node: XMLNode, _ xpath: String) -> String? {
        (try? node.nodes(forXPath: xpath))?.first?.stringValue?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The volume, or nil if glusterd has none of that name.
    public func volume(_ name: String) throws -> GlusterVolume? {
        do {
            return try Self.parseVolumes(run(["volume", "info", name])).first
        } catch let e as GlusterError where e.description.contains("does not exist") {
            return nil
        }
    }

    public func status(_ name: String) throws -> [GlusterBrickStatus] {
        try Self.parseStatus(run(["volume", "status", name]))
    }

    public static func parseVolumes(_ doc: XMLDocument) throws -> [GlusterVolume] {
        try doc.nodes(forXPath: "/cliOutput/volInfo/volumes/volume").map { v in
            var options: [String: String] = [:]
            for o in (try? v.nodes(forXPath: "options/option")) ?? [] {
                if let k = text(o, "name"), let value = text(o, "value") { options[k] = value }
            }
            return GlusterVolume(name: text(v, "name") ?? "", id: text(v, "id") ?? "", status: text(v, "statusStr") ?? "",
                                 type: text(v, "typeStr") ?? "", replicaCount: Int(text(v, "replicaCount") ?? "") ?? 1,
                                 arbiterCount: Int(text(v, "arbiterCount") ?? "") ?? 0,
                                 bricks: ((try? v.nodes(forXPath: "bricks/brick/name")) ?? []).compactMap { $0.stringValue },
                                 options: options)
        }
    }

    public static func parseStatus(_ doc: XMLDocument) throws -> [GlusterBrickStatus] {
        try doc.nodes(forXPath: "/cliOutput/volStatus/volumes/volume/node").compactMap { n in
            guard let host = text(n, "hostname"), let path = text(n, "path"), path.hasPrefix("/") else { return nil }  // self-heal daemons have no brick path
            return GlusterBrickStatus(brick: "\(host):\(path)", online: text(n, "status") == "1",
                                      pid: Int(text(n, "pid") ?? ""), port: Int(text(n, "port") ?? ""))
        }
    }
}
