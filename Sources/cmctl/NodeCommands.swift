import ArgumentParser
import CMConfig
import CMTypes
import CMWire
import Foundation
import CMImage
import Glibc

struct Node: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The node inventory (cm-pxed): list, show, add, change, remove, next boot, reboot, import and export.",
        subcommands: [List.self, Show.self, Add.self, Set.self, Rm.self, Boot.self, Reboot.self, Watch.self, Import.self, Export.self, Diff.self],
        defaultSubcommand: List.self)

    static func table(_ nodes: [NodeInfo]) -> String {
        var t = Table("NODE", "MAC", "ADDRESS", "GROUP", "IMAGE", "ARCH", "STATE", "BOOTS", "LAST SEEN")
        for n in nodes {
            let image = n.nextImage.map { "\($0) (next)" } ?? n.image ?? "(group)"
            t.add(n.name, n.mac.description, n.address?.description ?? n.seenAddress.map { "(\($0))" } ?? "-", n.group, image, n.arch ?? "-", n.state.rawValue,
                  String(n.bootCount), n.lastSeen.map { Format.age(since: $0) } ?? "never")
        }
        return t.render()
    }

    static func show(_ n: NodeInfo) {
        print("""
            node:        \(n.name)
            mac:         \(n.mac)
            address:     \(n.address?.description ?? "-")\(n.seenAddress.map { ", seen booting from \($0)" } ?? "")
            group:       \(n.group)
            image:       \(n.image ?? "(the group's)")\(n.nextImage.map { ", next boot: \($0)" } ?? "")
            kernel args: \(n.kernelArgs ?? "-")
            bmc:         \(n.bmc?.description ?? "-")
            arch:        \(n.arch ?? "-")
            state:       \(n.state.rawValue)
            boots:       \(n.bootCount)\(n.lastImage.map { ", last with image \($0)" } ?? "")
            first seen:  \(n.firstSeen.map(Format.time) ?? "never")
            last seen:   \(n.lastSeen.map(Format.time) ?? "never")
            """)
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List every node: MAC, address, group, image, architecture, boot state.")
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await reportingErrors {
                let nodes = try await global.call(.pxed) { try await $0.requestAll(MessageType.nodeList, NodeListRequest(), as: NodeListReply.self) }
                if global.json { return try printJSON(nodes) }
                print(Node.table(nodes))
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one node, by name or MAC address.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Node name or MAC address.") var node: String

        func run() async throws {
            try await reportingErrors {
                let n = try await global.call(.pxed) { try await $0.request(MessageType.nodeShow, NodeRef(node: node), as: NodeInfo.self) }
                if global.json { return try printJSON(n) }
                Node.show(n)
            }
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a node before it first boots (name from the pattern unless given).")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The node's MAC address.") var mac: String
        @Option(help: "Name (default: the next one from name_pattern).") var name: String?
        @Option(help: "Fixed address (default: the next free one in the DHCP range).") var address: String?
        @Option(help: "Group from pxed.toml.") var group: String?
        @Option(help: "The node's own image instead of its group's.") var image: String?
        @Option(help: "Kernel arguments added to its group's.") var kernelArgs: String?
        @Option(help: "Its BMC's address, for reboots over IPMI (pxed.toml's [ipmi]).") var bmc: String?

        func run() async throws {
            try await reportingErrors {
                guard let m = MACAddress(mac) else { throw CLIError.failed("\"\(mac)\" is not a MAC address") }
                var a: IPv4Address?, b: IPv4Address?
                if let address { guard let parsed = IPv4Address(address) else { throw CLIError.failed("\"\(address)\" is not an IPv4 address") }; a = parsed }
                if let bmc { guard let parsed = IPv4Address(bmc) else { throw CLIError.failed("--bmc: \"\(bmc)\" is not an IPv4 address") }; b = parsed }
                let request = NodeAddRequest(name: name, mac: m, address: a, group: group, image: image, kernelArgs: kernelArgs, bmc: b)
                let n = try await global.call(.pxed) { try await $0.request(MessageType.nodeAdd, request, as: NodeInfo.self) }
                if global.json { return try printJSON(n) }
                print("added \(n.name) (\(n.mac))\(n.address.map { " at \($0)" } ?? "")")
            }
        }
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change a node: name, address, group, image, kernel arguments, BMC (\"\" clears).")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Node name or MAC address.") var node: String
        @Option(help: "New name.") var name: String?
        @Option(help: "Fixed address (\"\" clears it).") var address: String?
        @Option(help: "Group from pxed.toml.") var group: String?
        @Option(help: "The node's own image (\"\" returns to its group's).") var image: String?
        @Option(help: "Kernel arguments added to its group's (\"\" clears).") var kernelArgs: String?
        @Option(help: "Its BMC's address, for reboots over IPMI (\"\" clears).") var bmc: String?

        func run() async throws {
            try await reportingErrors {
                var request = NodeSetRequest(node: node, name: name, group: group, image: image, kernelArgs: kernelArgs)
                if let address {
                    if address.isEmpty { request.clearAddress = true } else {
                        guard let a = IPv4Address(address) else { throw CLIError.failed("\"\(address)\" is not an IPv4 address") }
                        request.address = a
                    }
                }
                if let bmc {
                    if bmc.isEmpty { request.clearBmc = true } else {
                        guard let b = IPv4Address(bmc) else { throw CLIError.failed("--bmc: \"\(bmc)\" is not an IPv4 address") }
                        request.bmc = b
                    }
                }
                let n = try await global.call(.pxed) { try await $0.request(MessageType.nodeSet, request, as: NodeInfo.self) }
                if global.json { return try printJSON(n) }
                Node.show(n)
            }
        }
    }

    struct Rm: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a node from the inventory (it is discovered anew when it boots).")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Node name or MAC address.") var node: String

        func run() async throws {
            try await reportingErrors {
                let n = try await global.call(.pxed) { try await $0.request(MessageType.nodeRemove, NodeRef(node: node), as: NodeInfo.self) }
                if global.json { return try printJSON(n) }
                print("removed \(n.name) (\(n.mac))")
            }
        }
    }

    struct Reboot: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Reboot a node: cm-pxed asks it over SSH, or its BMC resets it over IPMI.",
            discussion: "The images let the power key (CONFIG_DIR/power_ed25519) run `systemctl reboot` and nothing else; cm-pxed checks the node's host key against the one it keeps for it. A node with a BMC (node set --bmc; credentials in pxed.toml's [ipmi]) is reset through it when SSH cannot reboot it, or with --via ipmi. Answers once the reboot is under way.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Node name or MAC address.") var node: String
        @Option(help: ArgumentHelp("ssh (a clean reboot) or ipmi (a reset by the BMC); default: SSH, else the BMC.", valueName: "method")) var via: String?

        func run() async throws {
            try await reportingErrors {
                var method: RebootMethod?
                if let via {
                    guard let m = RebootMethod(rawValue: via) else { throw CLIError.failed("--via: \"\(via)\" is not ssh or ipmi") }
                    method = m
                }
                let user = ProcessInfo.processInfo.environment["SUDO_USER"] ?? getpwuid(getuid()).map { String(cString: $0.pointee.pw_name) } ?? "uid \(getuid())"
                let r = try await global.call(.pxed) {
                    try await $0.request(MessageType.nodeReboot, NodeRebootRequest(node: node, method: method, requestedBy: "\(user) (cmctl)"), as: NodeRebootReply.self)
                }
                if global.json { return try printJSON(r) }
                if let why = r.fallbackReason { print("not over SSH: \(why)") }
                print(r.via == .ssh ? "\(r.node) (\(r.address)) is rebooting" : "\(r.node) is being reset by its BMC (\(r.address))")
            }
        }
    }

    struct Boot: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Choose the image a node boots next time (once).")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Node name or MAC address.") var node: String
        @Option(help: "Image for the next boot.") var image: String

        func run() async throws {
            try await reportingErrors {
                let n = try await global.call(.pxed) {
                    try await $0.request(MessageType.nodeSet, NodeSetRequest(node: node, nextImage: image), as: NodeInfo.self)
                }
                if global.json { return try printJSON(n) }
                print("\(n.name) boots image \(n.nextImage ?? image) next time")
            }
        }
    }

    struct Diff: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "What a running node changed against its image: files added (A), changed (C), removed (D) in its overlay.",
            discussion: "Reads the node's tmpfs upper layer over SSH as root with the master's key (CONFIG_DIR/ssh/id_ed25519) and compares it with the image revision the node booted.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var options: ImageOptions
        @Argument(help: "Node name or MAC address.") var node: String
        @Option(help: "Private key for root on the node (default: CONFIG_DIR/ssh/id_ed25519).") var sshKey: String?

        func run() async throws {
            try await reportingErrors {
                let n = try await global.call(.pxed) { try await $0.request(MessageType.nodeShow, NodeRef(node: node), as: NodeInfo.self) }
                guard let address = n.reachableAddress else { throw CLIError.failed("node \(n.name) has no known address") }
                guard let booted = n.lastImage.flatMap(ImageRef.init), let rev = booted.revision else {
                    throw CLIError.failed("node \(n.name) did not boot an image revision with a shared root (last image: \(n.lastImage ?? "none"))")
                }
                let store = try options.store()
                let root = "\(store.path(booted.name, rev))/root"
                guard FileManager.default.fileExists(atPath: root) else { throw CLIError.failed("\(booted) is not in \(store.directory) any more") }
                let listing = try OverlayListing.read(address: address.description, key: sshKey ?? "\(options.configDir)/ssh/id_ed25519")
                let d = TreeDiff.overlay(listing) { path in
                    var st = stat()
                    return lstat(root + path, &st) == 0
                }
                if global.json { return try printJSON(d) }
                for l in d.lines { print(l) }
            }
        }
    }

    struct Watch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stream node events (discovered, booting, booted) until interrupted.")
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await reportingErrors {
                try await global.call(.pxed) { conn in
                    try await conn.subscribe(topics: [Topic.node])
                    announceWatching("cm-pxed", json: global.json)
                    while let event = try await conn.nextEvent() {
                        guard event.header.type == MessageType.nodeEvent else { continue }
                        let e = try event.body(as: NodeEvent.self)
                        if global.json { try printJSONLine(e); continue }
                        print("\(Format.time(e.at))  \(e.node)  \(e.mac)  \(e.address?.description ?? "-")  \(e.state.rawValue)\(e.image.map { "  image \($0)" } ?? "")")
                        fflush(nil)
                    }
                    throw CLIError.failed("cm-pxed closed the connection")
                }
            }
        }
    }

    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add the nodes listed in a TOML ([[node]] tables) or CSV file; nodes already known by MAC are updated. All or nothing.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "FILE.toml or FILE.csv") var file: String

        func run() async throws {
            try await reportingErrors {
                let entries: [NodeSpec]
                do {
                    if file.hasSuffix(".csv") {
                        let text = try String(contentsOfFile: file, encoding: .utf8)
                        entries = try InventoryFile.parseCSV(text, file: file)
                    } else {
                        entries = try InventoryFile.parseTOML(ConfigSource.read(file))
                    }
                } catch let e as ConfigErrors {
                    throw CLIError.failed("\(file) has errors, nothing imported:\n\(e)")
                } catch {
                    throw CLIError.failed("\(file): \(error)")
                }
                // In parts that each fit a frame; cm-pxed applies them together with the last.
                let reply = try await global.call(.pxed) { conn in
                    var staging: String?
                    var start = 0
                    while true {
                        let end = min(entries.count, start + NodeImportRequest.partSize)
                        let part = NodeImportRequest(nodes: Array(entries[start..<end]), staging: staging, more: end < entries.count)
                        let reply = try await conn.request(MessageType.nodeImport, part, as: NodeImportReply.self)
                        guard part.more else { return reply }
                        guard let kept = reply.staging else { throw CLIError.failed("cm-pxed did not keep the import's first part") }
                        staging = kept
                        start = end
                    }
                }
                let (added, updated) = (reply.added, reply.updated)
                if global.json { return try printJSON(["added": added, "updated": updated]) }
                print("\(file): \(added) nodes added, \(updated) updated")
            }
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the inventory as TOML (default) or CSV, for cmctl node import.")
        @OptionGroup var global: GlobalOptions
        @Option(help: "toml or csv") var format: String = "toml"

        func run() async throws {
            try await reportingErrors {
                guard format == "toml" || format == "csv" else { throw CLIError.failed("--format must be toml or csv") }
                let nodes = try await global.call(.pxed) { try await $0.requestAll(MessageType.nodeList, NodeListRequest(), as: NodeListReply.self) }
                if global.json { return try printJSON(nodes) }
                if format == "csv" {
                    print(InventoryFile.csvHeader.joined(separator: ","))
                    for n in nodes {
                        print([n.name, n.mac.description, n.address?.description ?? "", n.group, n.image ?? "", n.kernelArgs ?? "", n.bmc?.description ?? ""]
                            .map { $0.replacingOccurrences(of: ",", with: " ") }.joined(separator: ","))
                    }
                    return
                }
                print("# cm-pxed inventory, \(nodes.count) nodes; load with: cmctl node import FILE.toml")
                for n in nodes {
                    var lines = ["", "[[node]]", "name = \(quote(n.name))", "mac = \(quote(n.mac.description))"]
                    if let a = n.address { lines.append("address = \(quote(a.description))") }
                    lines.append("group = \(quote(n.group))")
                    if let i = n.image { lines.append("image = \(quote(i))") }
                    if let k = n.kernelArgs { lines.append("kernel_args = \(quote(k))") }
                    if let b = n.bmc { lines.append("bmc = \(quote(b.description))") }
                    print(lines.joined(separator: "\n"))
                }
            }
        }

        func quote(_ s: String) -> String {
            "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
        }
    }
}

struct Pxe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Network boot (cm-pxed): mode, role, counters, images.",
        subcommands: [Status.self], defaultSubcommand: Status.self)

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show cm-pxed's mode, whether it answers DHCP, counters and images.")
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            try await reportingErrors {
                let s = try await global.call(.pxed) { try await $0.request(MessageType.pxeStatus, Empty(), as: PxeStatusReply.self) }
                if global.json { return try printJSON(s) }
                print("mode: \(s.mode) on \(s.interface), \(s.active ? "active (answering DHCP)" : "standby (DHCP silent)")")
                print("boot server: http://\(s.bootAddress):\(s.httpPort), TFTP \(s.tftpPort == 0 ? "off" : "port \(s.tftpPort)")")
                print("nodes: \(s.nodes), bound leases: \(s.leases), images: \(s.images.isEmpty ? "none" : s.images.joined(separator: ", "))")
                print("counters: " + s.counters.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
            }
        }
    }
}

/// A node's overlay upper layer, listed over SSH.
enum OverlayListing {
    static let upper = "/run/clustermaker/overlay/upper"

    static func read(address: String, key: String) throws -> [(type: Character, path: String)] {
        let data = try RemoteShell(address: address, key: key).check("find \(upper) -mindepth 1 -xdev -printf '%y\\t%P\\n'", what: "listing the overlay")
        return data.split(separator: "\n").compactMap { line in
            let parts = line.split(separator: "\t", maxSplits: 1)
            guard parts.count == 2, let t = parts[0].first else { return nil }
            return (t, String(parts[1]))
        }
    }
}
