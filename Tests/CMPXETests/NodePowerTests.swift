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

    func refusal(_ s: PXEService, _ node: String, ssh: String = "/bin/false") async -> WireError? {
        do {
            _ = try await s.reboot(NodeRebootRequest(node: node), ssh: ssh)
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
        #expect(reply == NodeRebootReply(node: "n9", address: IPv4Address("10.77.0.9")!, via: "ssh"))
        #expect(s.status().counters["node_reboots"] == 1)

        let denied = await refusal(s, "n9", ssh: try fakeSSH(answer: "echo 'root@10.77.0.9: Permission denied (publickey).' >&2; exit 255"))
        #expect(denied?.code == .unavailable && denied?.message.contains("Permission denied") == true && denied?.message.contains("power key") == true)
        let silent = await refusal(s, "n9", ssh: try fakeSSH(answer: "exec sleep 10"))
        #expect(silent?.message.contains("no answer within") == true, "killed after reboot_timeout")
        #expect(s.status().counters["node_reboots"] == 1)
    }
}
