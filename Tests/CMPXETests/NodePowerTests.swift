import CMConfig
import CMImage
@testable import CMPXE
import CMTypes
import CMWire
import Foundation
import Logging
import Testing

/// Rebooting a node: the refusals, the ssh that cm-pxed runs (a stand-in program here that
/// checks what it is given; test-image-qemu reboots a real node through real sshd).
@Suite final class NodePowerTests {
    let dir = NSTemporaryDirectory() + "cm-power-unit-\(UInt64.random(in: 0...UInt64.max))"
    let mac = MACAddress("52:54:00:00:00:09")!

    init() throws { try FileManager.default.createDirectory(atPath: dir + "/etc", withIntermediateDirectories: true) }
    deinit { try? FileManager.default.removeItem(atPath: dir) }

    func service(mode: String = "dhcp") throws -> PXEService {
        try PXEService(config: try pxedConfig("reboot_timeout = \"2s\"\n", mode: mode), stateDirectory: dir, configDirectory: dir + "/etc", events: EventHub(),
                       logger: Logger(label: "test"))
    }

    func refusal(_ s: PXEService, _ node: String, ssh: String = "/bin/false", method: RebootMethod? = nil) async -> WireError? {
        do {
            _ = try await s.reboot(NodeRebootRequest(node: node, method: method), ssh: ssh, ipmitool: "/bin/false")
            return nil
        } catch { return error }
    }

    @Test func theImageLetsThePowerKeyRunTheRebootOnly() {
        let keys = NodeFiles.authorizedKeys(masterKey: "ssh-ed25519 AAAAmaster root@m1\n", powerKey: "ssh-ed25519 AAAApower power@m1\n")
        #expect(keys == """
            ssh-ed25519 AAAAmaster root@m1
            restrict,command="/usr/bin/systemctl --no-block reboot && echo cm-reboot-queued" ssh-ed25519 AAAApower power@m1

            """)
        #expect(NodeFiles.authorizedKeys(masterKey: nil, powerKey: nil).isEmpty)
    }

    @Test func knownHostsLines() {
        let a = IPv4Address("10.0.0.9")!
        #expect(NodePower.knownHostsLine(address: a, publicKey: "ssh-ed25519 AAAAkey root@52-54-00-00-00-09\n") == "10.0.0.9 ssh-ed25519 AAAAkey")
        #expect(NodePower.knownHostsLine(address: a, publicKey: "") == nil)
        #expect(NodePower.knownHostsLine(address: a, publicKey: "garbage") == nil)
        #expect(NodePower.knownHostsLine(address: a, publicKey: "rm -rf /") == nil)
    }

    @Test func refusedWithoutANodeAnAddressAHostKeyOrThePowerKey() async throws {
        // Proxy mode: a node has no address until it is seen booting (or one is set).
        let s = try service(mode: "proxy")
        #expect(await refusal(s, "nobody")?.code == .notFound)
        _ = try s.add(NodeSpec(name: "n9", mac: mac))
        let noAddress = await refusal(s, "n9")
        #expect(noAddress?.code == .conflict && noAddress?.message.contains("no address") == true)
        _ = try s.set(NodeSetRequest(node: "n9", address: IPv4Address("10.77.0.9")))
        let noHostKey = await refusal(s, "n9")
        #expect(noHostKey?.code == .conflict && noHostKey?.message.contains("no SSH host key") == true)
        let identity = "\(dir)/identity/52-54-00-00-00-09"
        try FileManager.default.createDirectory(atPath: identity, withIntermediateDirectories: true)
        try "ssh-ed25519 AAAAhostkey root@52-54-00-00-00-09\n".write(toFile: identity + "/ssh_host_ed25519_key.pub", atomically: true, encoding: .utf8)
        let noPowerKey = await refusal(s, "n9")
        #expect(noPowerKey?.code == .unavailable && noPowerKey?.message.contains("power_ed25519") == true)
    }

    /// A stand-in for ssh that checks the private key copy, the host key pinning and the
    /// options, then answers as the node's forced command does (or as sshd refusing).
    func fakeSSH(answer: String) throws -> String {
        let path = "\(dir)/fake-ssh"
        try """
            #!/bin/sh
            key=""; known=""; strict=""; dest=""
            while [ $# -gt 0 ]; do
              case "$1" in
                -i) key="$2"; shift ;;
                -o) case "$2" in UserKnownHostsFile=*) known="${2#*=}" ;; StrictHostKeyChecking=*) strict="${2#*=}" ;; esac; shift ;;
                -F) shift ;;
                root@*) dest="${1#root@}" ;;
              esac
              shift
            done
            [ "$(stat -c %a "$key")" = 600 ] || { echo "key $key is not 0600" >&2; exit 1; }
            [ "$strict" = yes ] || { echo "host key not checked" >&2; exit 1; }
            grep -qx "$dest ssh-ed25519 AAAAhostkey" "$known" || { echo "known_hosts: $(cat "$known")" >&2; exit 1; }
            \(answer)
            """.write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o755)
        return path
    }

    @Test func aRebootGoesOverSSHWithThePinnedHostKey() async throws {
        let s = try service()
        _ = try s.add(NodeSpec(name: "n9", mac: mac, address: IPv4Address("10.77.0.9")))
        let identity = "\(dir)/identity/52-54-00-00-00-09"
        try FileManager.default.createDirectory(atPath: identity, withIntermediateDirectories: true)
        try "ssh-ed25519 AAAAhostkey root@52-54-00-00-00-09\n".write(toFile: identity + "/ssh_host_ed25519_key.pub", atomically: true, encoding: .utf8)
        try "PRIVATE\n".write(toFile: "\(dir)/etc/power_ed25519", atomically: true, encoding: .utf8)
        chmod("\(dir)/etc/power_ed25519", 0o640)

        let reply = try await s.reboot(NodeRebootRequest(node: "n9", requestedBy: "admin"), ssh: try fakeSSH(answer: "echo cm-reboot-queued"))
        #expect(reply == NodeRebootReply(node: "n9", address: IPv4Address("10.77.0.9")!, via: .ssh))
        #expect(s.status().counters["node_reboots"] == 1)

        let denied = await refusal(s, "n9", ssh: try fakeSSH(answer: "echo 'root@10.77.0.9: Permission denied (publickey).' >&2; exit 255"))
        #expect(denied?.code == .unavailable && denied?.message.contains("Permission denied") == true && denied?.message.contains("power key") == true)
        let silent = await refusal(s, "n9", ssh: try fakeSSH(answer: "exec sleep 10"))
        #expect(silent?.message.contains("no answer within") == true, "killed after reboot_timeout")
        #expect(s.status().counters["node_reboots"] == 1)
    }

    /// A stand-in for ipmitool: records its chassis command in `log`, says the power is
    /// `power` for status, or fails as a BMC that does not answer.
    func fakeIPMItool(power: String = "on", fail: Bool = false) throws -> (program: String, log: String) {
        let path = "\(dir)/fake-ipmitool", log = "\(dir)/ipmi.log"
        try """
            #!/bin/sh
            [ \(fail ? 1 : 0) = 1 ] && { echo "Error: Unable to establish IPMI v2 / RMCP+ session" >&2; exit 1; }
            echo "$*" >> \(log)
            case "$*" in
              *"chassis power status") echo "Chassis Power is \(power)" ;;
              *"chassis power reset") echo "Chassis Power Control: Reset" ;;
              *"chassis power on") echo "Chassis Power Control: Up/On" ;;
              *) echo "unexpected: $*" >&2; exit 1 ;;
            esac
            """.write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o755)
        return (path, log)
    }

    func ipmiService() throws -> PXEService {
        try PXEService(config: try pxedConfig("reboot_timeout = \"2s\"\n", mode: "proxy")
                        .with { $0.ipmi = { var i = PxedConfig.IPMI(); i.user = "admin"; i.passwordFile = "/etc/clustermaker/ipmi-password"; return i }() },
                       stateDirectory: dir, configDirectory: dir + "/etc", events: EventHub(), logger: Logger(label: "test"))
    }

    @Test func aNodeThatSSHCannotReachIsResetByItsBMC() async throws {
        let s = try ipmiService()
        _ = try s.add(NodeSpec(name: "n9", mac: mac, bmc: IPv4Address("10.78.0.9")))
        let (ipmitool, log) = try fakeIPMItool()
        // No address, no host key: SSH cannot; the BMC resets it, and the reply says why.
        let reply = try await s.reboot(NodeRebootRequest(node: "n9"), ssh: "/bin/false", ipmitool: ipmitool)
        #expect(reply.via == .ipmi && reply.address == IPv4Address("10.78.0.9") && reply.fallbackReason?.contains("no address") == true)
        let calls = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
        #expect(calls == ["-I lanplus -H 10.78.0.9 -p 623 -U admin -f /etc/clustermaker/ipmi-password -N 3 -R 2 chassis power status",
                          "-I lanplus -H 10.78.0.9 -p 623 -U admin -f /etc/clustermaker/ipmi-password -N 3 -R 2 chassis power reset"])
        // A node that is off is powered on.
        let off = try fakeIPMItool(power: "off")
        try FileManager.default.removeItem(atPath: off.log)
        _ = try await s.reboot(NodeRebootRequest(node: "n9", method: .ipmi), ipmitool: off.program)
        #expect(try String(contentsOfFile: off.log, encoding: .utf8).hasSuffix("chassis power on\n"))
        // Asked for SSH only: no fallback.
        #expect(await refusal(s, "n9", method: .ssh)?.message.contains("no address") == true)
        // A BMC that does not answer: ipmitool's words.
        let dead = try fakeIPMItool(fail: true)
        do {
            _ = try await s.reboot(NodeRebootRequest(node: "n9", method: .ipmi), ipmitool: dead.program)
            Issue.record("a dead BMC reset the node")
        } catch {
            #expect(error.code == .unavailable && error.message.contains("Unable to establish IPMI v2"))
        }
        #expect(s.status().counters["node_ipmi_resets"] == 2)
    }

    @Test func theBMCIsKeptInTheInventory() throws {
        _ = try service(mode: "proxy").add(NodeSpec(name: "n9", mac: mac, bmc: IPv4Address("10.78.0.9")))
        #expect(try service(mode: "proxy").show("n9").bmc == IPv4Address("10.78.0.9"), "after a restart")
        let s = try service(mode: "proxy")
        _ = try s.set(NodeSetRequest(node: "n9", bmc: IPv4Address("10.78.0.10")))
        #expect(try service(mode: "proxy").show("n9").bmc == IPv4Address("10.78.0.10"))
    }

    @Test func noBMCOrNoCredentialsSaySo() async throws {
        let s = try service(mode: "proxy")
        _ = try s.add(NodeSpec(name: "n9", mac: mac, bmc: IPv4Address("10.78.0.9")))
        do {
            _ = try await s.reboot(NodeRebootRequest(node: "n9", method: .ipmi), ipmitool: "/bin/false")
            Issue.record("reset without credentials")
        } catch { #expect(error.message.contains("no [ipmi] table")) }
        let withIPMI = try ipmiService()
        _ = try withIPMI.set(NodeSetRequest(node: "n9", clearBmc: true))
        do {
            _ = try await withIPMI.reboot(NodeRebootRequest(node: "n9", method: .ipmi), ipmitool: "/bin/false")
            Issue.record("reset without a BMC")
        } catch { #expect(error.message.contains("no BMC address")) }
    }
}

extension PxedConfig {
    func with(_ change: (inout PxedConfig) -> Void) -> PxedConfig {
        var c = self
        change(&c)
        return c
    }
}
