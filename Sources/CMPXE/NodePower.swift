import CMConfig
import CMImage
import CMTypes
import CMWire
import Foundation

/// Rebooting a node (`cmctl node reboot`, the console's Reboot): over SSH as root with the
/// suite's power key, CONFIG_DIR/power_ed25519. `cmctl image build` lets that key into
/// every image for one forced command only (`NodeFiles.powerKeyLine`), so the daemons that hold it
/// (running as user clustermaker) can reboot a node and do nothing else there. The node's host
/// key is checked against the one cm-pxed made for it (STATE_DIR/identity/MAC), so the key is
/// never offered to whoever answers at the node's address. The reboot is queued
/// (`systemctl --no-block`): the answer comes back before the node goes down.
/// A node with a BMC (its `bmc` in the inventory, pxed.toml's [ipmi] for the credentials) is
/// reset over IPMI instead when asked to, or when SSH cannot do it (no address or host key
/// yet, no answer): ipmitool's `chassis power reset`, or `power on` for a node that is off.
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

    /// ipmitool's arguments for one chassis command: the password from a file, each request
    /// waited for 3 s and sent twice more (-N 3 -R 2).
    static func ipmiArguments(_ ipmi: PxedConfig.IPMI, bmc: IPv4Address, _ command: [String]) -> [String] {
        ["-I", ipmi.interface, "-H", bmc.description, "-p", String(ipmi.port), "-U", ipmi.user, "-f", ipmi.passwordFile, "-N", "3", "-R", "2"]
            + (ipmi.cipherSuite.map { ["-C", String($0)] } ?? []) + ["chassis", "power"] + command
    }
}

extension ChildProcess.Result {
    /// The node's forced command said the reboot is queued.
    var queued: Bool { text.contains(NodeFiles.rebootQueuedMarker) }
}

extension PXEService {
    /// The power key cm-pxed uses: pxed.toml's power_key, else CONFIG_DIR/power_ed25519.
    var powerKey: String { config.pxed.powerKey ?? "\(configDirectory)/power_ed25519" }

    /// Reboots a node (see NodePower): over SSH, or through its BMC as `r.method` says or when
    /// SSH cannot. Refused, saying why, when neither way can do it.
    public func reboot(_ r: NodeRebootRequest, peer: PeerCredentials? = nil, ssh: String = "/usr/bin/ssh",
                       ipmitool: String = "/usr/bin/ipmitool") async throws(WireError) -> NodeRebootReply {
        let node = try show(r.node)
        let who = r.requestedBy.map { "\($0) (\(peer.map { "uid \($0.uid)" } ?? "?"))" } ?? (peer.map { "uid \($0.uid)" } ?? "?")
        let reply: NodeRebootReply
        do {
            switch r.method {
            case .ssh: reply = try await rebootOverSSH(node, ssh: ssh)
            case .ipmi: reply = try await resetOverIPMI(node, ipmitool: ipmitool)
            case nil:
                do {
                    reply = try await rebootOverSSH(node, ssh: ssh)
                } catch where node.bmc != nil && config.ipmi != nil && error.code != .internal {
                    logger.warning("\(error.message); resetting node \(node.name) through its BMC instead")
                    var r = try await resetOverIPMI(node, ipmitool: ipmitool)
                    r.fallbackReason = error.message
                    reply = r
                }
            }
        } catch {
            logger.error("reboot of node \(node.name), asked by \(who), failed: \(error.message)")
            throw error
        }
        counters.add(reply.via == .ssh ? "node_reboots" : "node_ipmi_resets")
        logger.notice("node \(node.name) (\(node.mac)) is rebooting (\(reply.via == .ssh ? "asked over SSH at" : "reset by its BMC at") \(reply.address)), asked by \(who)")
        return reply
    }

    /// The clean way: systemctl reboot on the node, over SSH with the power key.
    func rebootOverSSH(_ node: NodeInfo, ssh: String) async throws(WireError) -> NodeRebootReply {
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
        let knownHosts = "\(dir)/known_hosts"
        do {
            if FileManager.default.contents(atPath: key) != secret {
                let tmp = key + ".new"
                unlink(tmp)
                guard FileManager.default.createFile(atPath: tmp, contents: secret, attributes: [.posixPermissions: 0o600]), rename(tmp, key) == 0 else {
                    throw SystemError("writing \(key)")
                }
            }
            try (line + "\n").write(toFile: knownHosts, atomically: true, encoding: .utf8)
        } catch {
            throw WireError(.internal, "\(error)")
        }
        let timeout = config.pxed.rebootTimeout
        let args = NodePower.sshArguments(key: key, knownHosts: knownHosts, address: address,
                                          connectTimeout: max(1, Int(timeout.components.seconds) / 2))
        let outcome = try await Self.runPower(ssh, args, timeout: timeout)
        guard outcome.queued else {
            let why = outcome.failure(ssh, timeout: timeout)
            let hint = why.contains("Permission denied") ? " (does its image let the power key in? images built by cmctl image build do)" : ""
            throw WireError(.unavailable, "rebooting node \(node.name) at \(address) over SSH: \(why)\(hint)")
        }
        return NodeRebootReply(node: node.name, address: address, via: .ssh)
    }

    /// The hard way, for a node that does not answer: its BMC resets it (or powers it on).
    func resetOverIPMI(_ node: NodeInfo, ipmitool: String) async throws(WireError) -> NodeRebootReply {
        guard let bmc = node.bmc else { throw WireError(.conflict, "node \(node.name) has no BMC address (cmctl node set \(node.name) --bmc ADDRESS)") }
        guard let ipmi = config.ipmi else { throw WireError(.conflict, "pxed.toml has no [ipmi] table: cm-pxed has no credentials for node \(node.name)'s BMC") }
        let timeout = config.pxed.rebootTimeout
        let status = try await Self.runPower(ipmitool, NodePower.ipmiArguments(ipmi, bmc: bmc, ["status"]), timeout: timeout)
        guard status.succeeded else {
            throw WireError(.unavailable, "asking node \(node.name)'s BMC at \(bmc) for its power state: \(status.failure(ipmitool, timeout: timeout))")
        }
        let on = !status.text.lowercased().contains("is off")
        let command = try await Self.runPower(ipmitool, NodePower.ipmiArguments(ipmi, bmc: bmc, [on ? "reset" : "on"]), timeout: timeout)
        guard command.succeeded else {
            throw WireError(.unavailable, "node \(node.name)'s BMC at \(bmc) did not \(on ? "reset" : "power on") the node: \(command.failure(ipmitool, timeout: timeout))")
        }
        return NodeRebootReply(node: node.name, address: bmc, via: .ipmi)
    }

    static func runPower(_ program: String, _ args: [String], timeout: Duration) async throws(WireError) -> ChildProcess.Result {
        do {
            return try await blocking("node-power") { try ChildProcess.run(program, args, timeout: timeout) }
        } catch {
            throw WireError(.internal, "cannot run \(program): \(error)")
        }
    }
}
