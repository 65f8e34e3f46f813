import CMConfig
import CMImage
import CMTypes
import CMWire
import Foundation
import Synchronization

/// Rebooting a node (`cmctl node reboot`, the console's Reboot): over SSH as root with the
/// suite's power key, CONFIG_DIR/power_ed25519. `cmctl image build` lets that key into
/// every image for one forced command only (`NodeFiles.powerKeyLine`), so the daemons that hold it
/// (running as user clustermaker) can reboot a node and do nothing else there. The node's host
/// key is checked against the one cm-pxed made for it (STATE_DIR/identity/MAC), so the key is
/// never offered to whoever answers at the node's address. The reboot is queued
/// (`systemctl --no-block`): the answer comes back before the node goes down.
public enum NodePower {
    /// The node's host key as a known_hosts line for `address`: "ADDRESS TYPE BASE64".
    public static func knownHostsLine(address: IPv4Address, publicKey: String) -> String? {
        let fields = publicKey.split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count >= 2, fields[0].hasPrefix("ssh-") || fields[0].hasPrefix("ecdsa-") else { return nil }
        return "\(address) \(fields[0]) \(fields[1])"
    }

    /// ssh's arguments: nothing from a user's or the system's configuration, no agent, no
    /// password, only this key and this host key.
    static func sshArguments(key: String, knownHosts: String, address: IPv4Address, connectTimeout: Int) -> [String] {
        ["-F", "/dev/null", "-i", key, "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "BatchMode=yes",
         "-o", "PasswordAuthentication=no", "-o", "KbdInteractiveAuthentication=no",
         "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=\(knownHosts)", "-o", "GlobalKnownHostsFile=/dev/null",
         "-o", "UpdateHostKeys=no", "-o", "ConnectTimeout=\(connectTimeout)", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=1",
         "-o", "LogLevel=ERROR", "-T", "root@\(address)", "reboot"]
    }

    struct Outcome {
        var status: Int32
        var output: String
        var errors: String
        var timedOut: Bool
        var queued: Bool { output.contains(NodeFiles.rebootQueuedMarker) }
    }

    /// Runs ssh (blocking: call it through `blocking`), killing it after `timeout`.
    static func run(_ args: [String], timeout: Duration, program: String = "/usr/bin/ssh") throws -> Outcome {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: program)
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let timedOut = Mutex(false)
        let timer = DispatchWorkItem {
            guard p.isRunning else { return }
            timedOut.withLock { $0 = true }
            p.terminate()
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(Int(timeout.components.seconds * 1000)), execute: timer)
        nonisolated(unsafe) var errors = Data()
        let group = DispatchGroup()
        DispatchQueue.global().async(group: group) { errors = err.fileHandleForReading.readDataToEndOfFile() }
        let output = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        p.waitUntilExit()
        timer.cancel()
        return Outcome(status: p.terminationStatus, output: String(decoding: output, as: UTF8.self),
                       errors: String(decoding: errors, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines),
                       timedOut: timedOut.withLock { $0 })
    }
}

extension PXEService {
    /// The power key cm-pxed uses: pxed.toml's power_key, else CONFIG_DIR/power_ed25519.
    var powerKey: String { config.pxed.powerKey ?? "\(configDirectory)/power_ed25519" }

    /// Reboots a node over SSH (see NodePower). Refused, saying why, for a node without an
    /// address, one that has never fetched its host key (it has not booted a ClusterMaker
    /// image from this master), or when the power key cannot be read.
    public func reboot(_ r: NodeRebootRequest, peer: PeerCredentials? = nil, ssh: String = "/usr/bin/ssh") async throws(WireError) -> NodeRebootReply {
        let node = try show(r.node)
        guard let address = node.reachableAddress else {
            throw WireError(.conflict, "node \(node.name) has no address yet (it has not taken a lease or fetched a boot script)")
        }
        let dir = "\(stateDirectory)/identity/\(BootPlan.urlForm(node.mac))"
        guard let hostKey = try? String(contentsOfFile: "\(dir)/ssh_host_ed25519_key.pub", encoding: .utf8),
              let line = NodePower.knownHostsLine(address: address, publicKey: hostKey)
        else {
            throw WireError(.conflict, "node \(node.name) has no SSH host key on this master yet: it has not booted a ClusterMaker image from it, so it cannot be rebooted over SSH")
        }
        let configured = powerKey
        guard let secret = FileManager.default.contents(atPath: configured) else {
            throw WireError(.unavailable, "cm-pxed cannot read the power key \(configured) (cmctl image build makes it, readable by group clustermaker; power_key in pxed.toml names another)")
        }
        // ssh takes a key only from a file that no one else may read: a private copy, since
        // the configured one is group-readable.
        let key = "\(stateDirectory)/power_key"
        do {
            if FileManager.default.contents(atPath: key) != secret {
                let tmp = key + ".new"
                unlink(tmp)
                guard FileManager.default.createFile(atPath: tmp, contents: secret, attributes: [.posixPermissions: 0o600]), rename(tmp, key) == 0 else {
                    throw SystemError("writing \(key)")
                }
            }
        } catch {
            throw WireError(.internal, "\(error)")
        }
        let knownHosts = "\(dir)/known_hosts"
        do {
            try (line + "\n").write(toFile: knownHosts, atomically: true, encoding: .utf8)
        } catch {
            throw WireError(.internal, "writing \(knownHosts): \(error)")
        }
        let timeout = config.pxed.rebootTimeout
        let args = NodePower.sshArguments(key: key, knownHosts: knownHosts, address: address,
                                          connectTimeout: max(1, Int(timeout.components.seconds) / 2))
        let who = r.requestedBy.map { "\($0) (\(peer.map { "uid \($0.uid)" } ?? "?"))" } ?? (peer.map { "uid \($0.uid)" } ?? "?")
        let outcome: NodePower.Outcome
        do {
            outcome = try await blocking("node-reboot") { try NodePower.run(args, timeout: timeout, program: ssh) }
        } catch {
            throw WireError(.internal, "cannot run ssh: \(error)")
        }
        guard outcome.queued else {
            let why = outcome.timedOut ? "no answer within \(timeout)"
                : outcome.errors.isEmpty ? "ssh exit status \(outcome.status)" : outcome.errors
            logger.error("reboot of node \(node.name) at \(address), asked by \(who), failed: \(why)")
            let hint = why.contains("Permission denied") ? " (does its image let the power key in? images built by cmctl image build do)" : ""
            throw WireError(.unavailable, "rebooting node \(node.name) at \(address) over SSH: \(why)\(hint)")
        }
        counters.add("node_reboots")
        logger.notice("node \(node.name) (\(node.mac)) at \(address) is rebooting, asked by \(who)")
        return NodeRebootReply(node: node.name, address: address, via: "ssh")
    }
}
