import CMConfig
import CMImage
import CMTypes
import CMWire
import Foundation
import Logging
import PXEProtocols
import Synchronization

/// cm-pxed's state: configuration, inventory, leases, role. The DHCP threads, the TFTP
/// server and the HTTP server call in; every change is stored before it is answered.
public final class PXEService: Sendable {
    struct State {
        var config: PxedConfig
        var machine: DHCPLeaseMachine?
        var nodes: NodeTable
        /// Answering DHCP: standalone, or cm-vipd says this master is active.
        var active: Bool
        /// Where booting nodes are: script fetches from elsewhere are not recorded.
        var bootNetwork: IPv4Network?
        /// PXE clients seen in DHCP that have not fetched a script yet.
        var sightings = Sightings()
        /// DISCOVERs from clients that are not nodes (discover_rate_limit).
        var discoverLimit: RateLimiter
        /// When dropped DISCOVERs were last logged.
        var limitLogged: Date?

        /// The name a new node gets: the next free one from name_pattern.
        var nextName: String { PXEService.nextName(config, taken: Set(nodes.names)) }
    }

    let inventory: Inventory
    let events: EventHub
    let logger: Logger
    let counters = Counters()
    let stateDirectory: String
    /// /etc/clustermaker: where the power key is by default.
    let configDirectory: String
    private let state: Mutex<State>
    /// Imports sent in parts, by staging name, until their last part comes.
    private let imports = Mutex<[String: StagedImport]>([:])

    public init(config: PxedConfig, stateDirectory: String, configDirectory: String = "/etc/clustermaker", events: EventHub, logger: Logger) throws {
        inventory = try Inventory(path: (stateDirectory as NSString).appendingPathComponent("pxed.sqlite"))
        self.events = events
        self.logger = logger
        self.stateDirectory = stateDirectory
        self.configDirectory = configDirectory
        let nodes = NodeTable(try inventory.nodes())
        let leases = try inventory.leases()
        state = Mutex(State(config: config, machine: nil, nodes: nodes, active: !config.pxed.followVipd, bootNetwork: Self.bootNetwork(config),
                            discoverLimit: RateLimiter(perSecond: config.pxed.discoverRateLimit)))
        state.withLock { $0.machine = Self.machine(config, nodes: $0.nodes, leases: leases) }
    }

    static func machine(_ config: PxedConfig, nodes: NodeTable, leases: [DHCPLease]) -> DHCPLeaseMachine? {
        guard config.pxed.mode == .dhcp, let d = config.dhcp else { return nil }
        var statics: [MACAddress: IPv4Address] = [:]
        for n in nodes.values { if let a = n.address, d.network.contains(a) { statics[n.mac] = a } }
        let pool = DHCPPool(server: config.pxed.serverAddress, subnetMask: IPv4Address(rawValue: d.network.mask), first: d.rangeStart,
                            last: d.rangeEnd, routers: d.routers, dnsServers: d.dnsServers, domainName: d.domain,
                            leaseTime: UInt32(d.leaseTime.components.seconds), staticLeases: statics)
        return DHCPLeaseMachine(pool: pool, leases: leases)
    }

    public var config: PxedConfig { state.withLock { $0.config } }

    /// boot_network; else full DHCP's network; else the network of the interface address
    /// that is server_address.
    static func bootNetwork(_ config: PxedConfig) -> IPv4Network? {
        if let n = config.pxed.bootNetwork { return n }
        if config.pxed.mode == .dhcp, let d = config.dhcp { return d.network }
        return InterfaceAddresses.network(of: config.pxed.serverAddress)
    }

    public func apply(_ config: PxedConfig) {
        state.withLock { s in
            let leases = s.machine.map { Array($0.leases.values) } ?? ((try? inventory.leases()) ?? [])
            if config.pxed.discoverRateLimit != s.config.pxed.discoverRateLimit {
                s.discoverLimit = RateLimiter(perSecond: config.pxed.discoverRateLimit)
            }
            s.config = config
            s.bootNetwork = Self.bootNetwork(config)
            s.machine = Self.machine(config, nodes: s.nodes, leases: leases)
            if !config.pxed.followVipd { s.active = true }
        }
    }

    public func setActive(_ active: Bool) {
        let changed = state.withLock { s in
            defer { s.active = active }
            return s.active != active
        }
        if changed { logger.notice(active ? "this master is active: answering DHCP" : "this master is standby: DHCP silent") }
    }

    var isActive: Bool { state.withLock { $0.active } }

    /// Reads the nodes and leases again from the database: cm-replicad restored the newest
    /// replicated state into it because this master became active.
    public func reloadInventory() throws {
        let nodes = NodeTable(try inventory.nodes())
        let leases = try inventory.leases()
        state.withLock { s in
            s.nodes = nodes
            s.machine = Self.machine(s.config, nodes: nodes, leases: leases)
        }
        logger.notice("inventory reloaded: \(nodes.count) nodes, \(leases.count) leases")
    }

    // MARK: Directories

    public var bootDirectory: String { config.pxed.bootDirectory ?? (stateDirectory as NSString).appendingPathComponent("boot") }
    public var imagesDirectory: String { imagesDirectory(config) }
    func imagesDirectory(_ config: PxedConfig) -> String {
        config.pxed.imagesDirectory ?? (stateDirectory as NSString).appendingPathComponent("images")
    }

    func imageStore(_ config: PxedConfig) -> ImageStore { ImageStore(directory: imagesDirectory(config)) }

    /// The directory a node boots `image` ("NAME" or "NAME@REV") from, nil if there is none.
    func imageDirectory(_ image: String, config: PxedConfig) -> String? {
        guard let ref = ImageRef(image) else { return nil }
        return try? imageStore(config).bootDirectory(ref)
    }

    /// `image` with the revision it means now ("compute" → "compute@4"), so that the kernel,
    /// the initramfs and the root a node boots all come from one revision even when a new
    /// one is published while it boots.
    func pinned(_ image: String, config: PxedConfig) -> String {
        guard let ref = ImageRef(image), ref.revision == nil, let rev = try? imageStore(config).resolve(ref) else { return image }
        return ImageRef(name: ref.name, revision: rev).description
    }

    func imageFiles(_ image: String, config: PxedConfig) -> Set<String> {
        guard let dir = imageDirectory(image, config: config) else { return [] }
        return Set((try? FileManager.default.contentsOfDirectory(atPath: dir))?.filter { BootPlan.isServableName($0) } ?? [])
    }

    public var images: [String] { imageStore(config).images() }

    // MARK: DHCP

    /// A reply and where it goes.
    struct Outgoing {
        var bytes: [UInt8]
        var to: IPv4Endpoint
    }

    static let broadcast = IPv4Endpoint(address: IPv4Address(255, 255, 255, 255), port: DHCP.clientPort)

    /// One datagram received on port 67 or 4011 (proxyDHCP). Malformed ones are counted and
    /// dropped; the daemon goes on.
    func handleDHCP(_ bytes: ArraySlice<UInt8>, port: UInt16, from: IPv4Endpoint, now: Date = Date()) -> Outgoing? {
        counters.add("dhcp_received")
        let m: DHCPMessage
        do { m = try DHCPMessage(parsing: bytes) } catch {
            counters.add("dhcp_malformed")
            logger.notice("DHCP: malformed datagram from \(from) dropped: \(error)")
            return nil
        }
        guard m.op == .request, let mac = m.clientMAC, let type = m.messageType else {
            counters.add("dhcp_ignored")
            return nil
        }
        let epoch = Int64(now.timeIntervalSince1970)
        let booting = m.isPXEClient || m.isIPXE
        var out: Outgoing?
        var note = ""
        do {
            try state.withLock { s in
                guard s.active else { note = "standby: \(type) from \(mac) not answered"; return }
                let config = s.config
                var node = s.nodes[mac]
                if node == nil, booting, type == .discover || type == .request {
                    // A PXE client we do not know becomes a node only when it fetches its
                    // script from the address DHCP gave it (bootScript): a DISCOVER costs
                    // anybody nothing to make up, and 5,000 of them must not become 5,000
                    // nodes with 5,000 reserved addresses. Until then it has an ordinary
                    // lease, which expires, and a sighting, which is forgotten.
                    if type == .discover, !s.discoverLimit.take(now: now) {
                        counters.add("dhcp_rate_limited")
                        // A flood must not flood the journal too: one line per 10 s at most.
                        if now.timeIntervalSince(s.limitLogged ?? .distantPast) >= 10 {
                            s.limitLogged = now
                            logger.notice("DHCP: more than \(config.pxed.discoverRateLimit) DISCOVERs/s from unknown clients; dropping the excess (\(counters.value("dhcp_rate_limited")) so far)")
                        }
                        note = "DISCOVER from \(mac) dropped: rate limit"
                        return
                    }
                    s.sightings.record(mac, arch: BootPlan.architecture(m.clientArchitectures), at: now)
                } else if var known = node, booting {
                    // Addresses for admin-added nodes without one, and the architecture, on first sight.
                    var changed = false
                    if known.address == nil, let machine = s.machine, let a = machine.address(for: mac, now: epoch) {
                        known.address = a
                        changed = true
                    }
                    if let arch = BootPlan.architecture(m.clientArchitectures), known.arch != arch { known.arch = arch; changed = true }
                    if known.firstSeen == nil { known.firstSeen = now; changed = true }
                    if known.state == .new { known.state = .discovered; changed = true }
                    if changed || now.timeIntervalSince(known.lastSeen ?? .distantPast) > 60 {
                        known.lastSeen = now
                        try inventory.save(known)
                        Self.commit(known, to: &s)
                    }
                    node = known
                }

                if port == DHCP.proxyPort || config.pxed.mode == .proxy {
                    // proxyDHCP: boot information only, to PXE clients only.
                    guard booting else { note = "proxyDHCP: \(type) from \(mac) is not a PXE client"; return }
                    switch (port, type) {
                    case (DHCP.serverPort, .discover):
                        let r = BootPlan.proxyReply(.offer, to: m, config: config)
                        out = Outgoing(bytes: r.serialize(), to: Self.broadcast)
                    case (DHCP.proxyPort, .request), (DHCP.proxyPort, .inform):
                        let r = BootPlan.proxyReply(.ack, to: m, config: config)
                        out = Outgoing(bytes: r.serialize(), to: from)
                    default:
                        note = "proxyDHCP: \(type) from \(mac) on port \(port) needs no answer"
                        return
                    }
                    note = "proxyDHCP \(type) from \(mac)\(node.map { " (\($0.name))" } ?? ""): boot file \(BootPlan.bootFile(for: m, config: config))"
                    return
                }
                guard var machine = s.machine else { note = "DHCP off: \(type) from \(mac) not answered"; return }
                // One pool, one network: a relay agent forwarding from another subnet would
                // get addresses that do not work there.
                if m.giaddr.rawValue != 0, let network = config.dhcp?.network, !network.contains(m.giaddr) {
                    note = "\(type) from \(mac) relayed by \(m.giaddr), outside \(network): not answered"
                    return
                }
                let outcome = machine.handle(m, now: epoch)
                try inventory.store(outcome.changed)
                s.machine = machine
                note = outcome.note
                guard var reply = outcome.reply else { return }
                if reply.messageType != .nak {
                    if let node { reply.setOption(DHCPMessage.Code.hostName, Array(node.name.utf8)) }
                    if booting { BootPlan.addBootInformation(to: &reply, request: m, config: config) }
                }
                let to: IPv4Endpoint
                switch DHCPLeaseMachine.destination(for: reply, request: m) {
                case .relay(let a): to = IPv4Endpoint(address: a, port: DHCP.serverPort)
                case .unicast(let a): to = IPv4Endpoint(address: a, port: DHCP.clientPort)
                // No ARP entry can be added for an address the client does not have yet
                // without CAP_NET_ADMIN; RFC 2131 4.1 allows broadcasting instead.
                case .broadcast, .hardware: to = Self.broadcast
                }
                out = Outgoing(bytes: reply.serialize(), to: to)
            }
        } catch {
            counters.add("dhcp_errors")
            logger.error("DHCP: \(type) from \(mac): storing failed: \(error)")
            return nil
        }
        if out != nil { counters.add("dhcp_replied") } else { counters.add("dhcp_ignored") }
        logger.info("DHCP: \(note)")
        return out
    }

    static func nextName(_ config: PxedConfig, taken: Set<String>) -> String {
        let pattern = NamePattern(config.pxed.namePattern) ?? NamePattern("node%03d")!
        var n = (taken.compactMap { pattern.number(in: $0) }.max() ?? 0) + 1
        while taken.contains(pattern.name(n)) { n += 1 }
        return pattern.name(n)
    }

    // MARK: HTTP boot

    /// The node's iPXE script; records that it is booting (and takes its one-shot image) when
    /// the request is one a booting node would make. `record: false` (HEAD) only shows what it
    /// would get.
    ///
    /// Anybody who reaches the port can ask for any MAC address's script, so a request is
    /// recorded only when it comes from where that node is: in full DHCP mode, the address
    /// DHCP handed to that MAC address; otherwise (proxy mode, DHCP off) an address in the
    /// boot network, which is recorded as where the node was seen (`seenAddress`), never as
    /// its fixed address. A standby master records nothing. Whatever is not recorded is still
    /// answered with the script the node would get.
    func bootScript(mac: MACAddress, from client: IPv4Address, record: Bool = true) -> String {
        let now = Date()
        let (text, events, note): (String, [NodeEvent], String?) = state.withLock { s in
            let known = s.nodes[mac]
            var node = known ?? NodeInfo(name: s.nextName, mac: mac, group: s.config.pxed.defaultGroup, state: .discovered, firstSeen: now)
            let image = pinned(BootPlan.image(for: node, config: s.config), config: s.config)
            guard record else { return (render(node, image: image, config: s.config), [], nil) }
            if let refusal = recordingRefusal(mac: mac, known: known, client: client, in: s, now: now) {
                return (render(node, image: image, config: s.config), [], refusal)
            }
            if known == nil, let seen = s.sightings.sighting(of: mac, now: now) {
                node.arch = seen.arch
                node.firstSeen = seen.at
            }
            node.nextImage = nil
            node.state = .booting
            node.bootCount += 1
            node.lastSeen = now
            node.lastImage = image
            // Full DHCP: a node first seen here keeps the address DHCP gave it, as on DISCOVER.
            if s.config.pxed.mode != .dhcp { node.seenAddress = client } else if known == nil { node.address = client }
            // Another node seen at this address before has left it (the other DHCP server
            // gave it to this one): its observation goes, nothing else of it.
            var moved = s.nodes.values.filter { $0.mac != mac && $0.seenAddress == node.seenAddress && node.seenAddress != nil }
            for i in moved.indices { moved[i].seenAddress = nil }
            do { try inventory.save(moved + [node]) } catch {
                return (render(node, image: image, config: s.config), [], "\(error)")
            }
            for n in moved + [node] { Self.commit(n, to: &s) }
            let booting = NodeEvent(node: node.name, mac: mac, address: node.reachableAddress, state: .booting, image: image, at: now)
            var discovered = booting
            discovered.state = .discovered
            discovered.image = nil
            return (render(node, image: image, config: s.config), known == nil ? [discovered, booting] : [booting], nil)
        }
        if let note {
            counters.add("http_not_recorded")
            logger.info("boot script for \(mac) sent to \(client), boot not recorded: \(note)")
        }
        for event in events {
            if event.state == .discovered {
                logger.notice("discovered node \(event.node) (\(mac)) at \(client)")
            } else {
                logger.notice("node \(event.node) (\(mac)) is booting image \(event.image ?? "-") from \(client)")
            }
            try? self.events.publish(topic: Topic.node, type: MessageType.nodeEvent, body: event)
        }
        return text
    }

    /// Why a script fetch by `client` for `mac` must not be recorded, or nil when it may.
    private func recordingRefusal(mac: MACAddress, known: NodeInfo?, client: IPv4Address, in s: State, now: Date) -> String? {
        guard s.active else { return "this master is standby" }
        if s.config.pxed.mode == .dhcp {
            if let known, known.address == client { return nil }
            let epoch = Int64(now.timeIntervalSince1970)
            if let lease = s.machine?.leases[client], lease.mac == mac, lease.state == .offered || lease.state == .bound, lease.expires > epoch {
                return known == nil && s.nodes.holding(client) != nil
                    ? "\(client) is another node's fixed address" : nil
            }
            return "\(client) is not the address DHCP gave \(mac)"
        }
        guard let network = s.bootNetwork else { return "the boot network is not known (no interface has \(s.config.pxed.serverAddress))" }
        return network.contains(client) ? nil : "\(client) is outside the boot network \(network)"
    }

    /// The script of `image` for `node`: the image's template filled in, or the default one.
    private func render(_ node: NodeInfo, image: String, config: PxedConfig) -> String {
        BootPlan.script(node: node, image: image, template: template(image, config), files: imageFiles(image, config: config), config: config)
    }

    /// The image's own iPXE script template, boot.ipxe.in, if it has one.
    func template(_ image: String, _ config: PxedConfig) -> String? {
        guard let ref = ImageRef(image), let dir = imageDirectory(image, config: config) else { return nil }
        return (try? String(contentsOfFile: "\(dir)/boot.ipxe.in", encoding: .utf8))
            ?? (try? String(contentsOfFile: "\(imageStore(config).path(ref.name))/boot.ipxe.in", encoding: .utf8))
    }

    /// A file of `image` was sent completely to the node `mac`: its final stage means booted.
    func fileSent(mac: MACAddress, image: String, file: String) {
        guard file == BootPlan.finalStage(files: imageFiles(image, config: config)) else { return }
        let now = Date()
        let event: NodeEvent? = state.withLock { s in
            guard s.active, var node = s.nodes[mac], node.state == .booting else { return nil }
            node.state = .booted
            node.lastSeen = now
            do { try inventory.save(node) } catch {
                logger.error("storing node \(node.name): \(error)")
                return nil
            }
            s.nodes.put(node)
            return NodeEvent(node: node.name, mac: mac, address: node.reachableAddress, state: .booted, image: image, at: now)
        }
        if let event {
            logger.notice("node \(event.node) (\(mac)) booted: fetched \(image)/\(file)")
            try? events.publish(topic: Topic.node, type: MessageType.nodeEvent, body: event)
        }
    }

    // MARK: Node identity

    /// /etc/hosts for the nodes: every node with an address, by name (and name.domain).
    func hostsFile() -> String {
        let (nodes, domain) = state.withLock { ($0.nodes.sorted(), $0.config.dhcp?.domain) }
        var out = "# The cluster's nodes, from cm-pxed's inventory.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        for n in nodes {
            guard let a = n.reachableAddress else { continue }
            out += "\(a)\t" + ([domain.map { "\(n.name).\($0)" }, n.name].compactMap { $0 }.joined(separator: " ")) + "\n"
        }
        return out
    }

    /// The node's SSH host key (ed25519), made on first request and kept in
    /// STATE_DIR/identity/MAC/, so a node has the same key at every boot and on every image.
    /// A private key goes only to the node itself: a request from the address DHCP gave that
    /// MAC address, its fixed address, or (proxy mode) the address it fetched its boot script
    /// from. Returns the key file, or why not. ssh-keygen runs on the caller's thread (an HTTP
    /// boot loop): once per node in its lifetime, about 50 ms.
    func hostKey(mac: MACAddress, client: IPv4Address, now: Date = Date()) -> Result<String, IdentityRefusal> {
        let allowed: Bool = state.withLock { s in
            guard let node = s.nodes[mac] else { return false }
            if node.address == client || node.seenAddress == client { return true }
            if s.config.pxed.mode == .dhcp, let lease = s.machine?.leases[client], lease.mac == mac, lease.state == .bound,
               lease.expires > Int64(now.timeIntervalSince1970) { return true }
            return false
        }
        guard allowed else { return .failure(IdentityRefusal(reason: "\(client) is not where node \(mac) is")) }
        let dir = "\(stateDirectory)/identity/\(BootPlan.urlForm(mac))", key = "\(dir)/ssh_host_ed25519_key"
        if FileManager.default.fileExists(atPath: key) { return .success(key) }
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/ssh-keygen")
            p.arguments = ["-q", "-t", "ed25519", "-N", "", "-C", "root@\(BootPlan.urlForm(mac))", "-f", key + ".new"]
            p.standardInput = FileHandle.nullDevice
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            p.waitUntilExit()
            guard p.terminationStatus == 0 else { return .failure(IdentityRefusal(reason: "ssh-keygen failed (status \(p.terminationStatus))")) }
            // Two requests at once: the first rename wins, both send that key.
            _ = rename(key + ".new.pub", key + ".pub")
            if link(key + ".new", key) != 0 && errno != EEXIST { return .failure(IdentityRefusal(reason: "storing \(key): \(String(cString: strerror(errno)))")) }
            unlink(key + ".new")
            logger.notice("made the SSH host key of node \(mac): \(key)")
            return .success(key)
        } catch {
            return .failure(IdentityRefusal(reason: "ssh-keygen: \(error)"))
        }
    }

    // MARK: Inventory over the wire

    public var nodes: [NodeInfo] { state.withLock { $0.nodes.sorted() } }

    /// One page of `nodes`.
    public func nodeList(_ r: NodeListRequest) -> NodeListReply {
        let page = state.withLock { Paging.page($0.nodes.sorted(), key: \.name, after: r.cursor) }
        return NodeListReply(nodes: page.items, next: page.next)
    }

    func find(_ ref: String, in s: State) -> NodeInfo? {
        if let mac = MACAddress(ref) ?? BootPlan.mac(urlForm: ref) { return s.nodes[mac] }
        return s.nodes.named(ref)
    }

    public func show(_ ref: String) throws(WireError) -> NodeInfo {
        guard let n = state.withLock({ find(ref, in: $0) }) else { throw WireError(.notFound, "no node \"\(ref)\" (by name or MAC address)") }
        return n
    }

    public func add(_ r: NodeAddRequest) throws(WireError) -> NodeInfo {
        let node = try edit { s throws(WireError) in try nodeAdding(r, in: s) }
        try? events.publish(topic: Topic.node, type: MessageType.nodeChanged, body: NodeRef(node: node.name))
        logger.notice("node \(node.name) (\(node.mac)) added\(node.address.map { " at \($0)" } ?? "")")
        return node
    }

    public func set(_ r: NodeSetRequest) throws(WireError) -> NodeInfo {
        let node = try edit { s throws(WireError) in try nodeChanging(r, in: s) }
        try? events.publish(topic: Topic.node, type: MessageType.nodeChanged, body: NodeRef(node: node.name))
        logger.notice("node \(node.name) (\(node.mac)) changed")
        return node
    }

    /// One part of `cmctl node import`: kept while more follow, else applied with the parts
    /// before it.
    public func importNodes(_ r: NodeImportRequest, now: Date = Date()) throws(WireError) -> NodeImportReply {
        let outcome = try imports.withLock { (staged: inout [String: StagedImport]) throws(WireError) -> StagedImport.Step in
            staged = staged.filter { $0.value.expires > now }
            var part = StagedImport(entries: [], expires: now.addingTimeInterval(StagedImport.lifetime))
            if let staging = r.staging {
                guard let earlier = staged.removeValue(forKey: staging) else {
                    throw WireError(.notFound, "no import \(staging) in progress (parts expire after \(Int(StagedImport.lifetime)) s); nothing imported")
                }
                part.entries = earlier.entries
            } else if r.more, staged.count >= StagedImport.maxInProgress {
                throw WireError(.unavailable, "\(staged.count) imports are in progress already; try again later")
            }
            part.entries += r.nodes
            guard part.entries.count <= StagedImport.maxEntries else {
                throw WireError(.invalidArgument, "an import holds at most \(StagedImport.maxEntries) nodes; nothing imported")
            }
            guard r.more else { return .apply(part.entries) }
            let name = r.staging ?? String(UInt64.random(in: 1...UInt64.max), radix: 36)
            staged[name] = part
            return .kept(name)
        }
        switch outcome {
        case .apply(let entries): return try importNodes(entries)
        case .kept(let staging): return NodeImportReply(added: 0, updated: 0, staging: staging)
        }
    }

    /// `cmctl node import`: adds the entries with new MAC addresses and changes the known ones,
    /// all of them or, when one is refused, none (the inventory is left as it was).
    public func importNodes(_ entries: [NodeSpec]) throws(WireError) -> NodeImportReply {
        let result: Result<NodeImportReply, WireError> = state.withLock { s in
            var scratch = s
            var changed: [NodeInfo] = []
            var reply = NodeImportReply(added: 0, updated: 0)
            for (i, e) in entries.enumerated() {
                let known = scratch.nodes[e.mac] != nil
                let change = NodeSetRequest(node: e.mac.description, name: e.name, address: e.address, group: e.group, image: e.image,
                                            kernelArgs: e.kernelArgs, bmc: e.bmc)
                do throws(WireError) {
                    let node = known ? try nodeChanging(change, in: scratch) : try nodeAdding(e, in: scratch)
                    Self.commit(node, to: &scratch)
                    changed.append(node)
                } catch {
                    return .failure(WireError(error.code, "entry \(i + 1) (\(e.mac)): \(error.message); nothing imported"))
                }
                if known { reply.updated += 1 } else { reply.added += 1 }
            }
            do { try inventory.save(changed) } catch {
                return .failure(Self.storing("the import", error, "; nothing imported"))
            }
            s = scratch
            return .success(reply)
        }
        let reply = try result.get()
        try? events.publish(topic: Topic.node, type: MessageType.nodeChanged, body: NodeRef(node: ""))
        logger.notice("inventory import: \(reply.added) nodes added, \(reply.updated) changed")
        return reply
    }

    /// One node changed by `change` (checked against the state, nothing stored), then stored
    /// and, only once it is, put into the state.
    private func edit(_ change: (State) throws(WireError) -> NodeInfo) throws(WireError) -> NodeInfo {
        let result: Result<NodeInfo, WireError> = state.withLock { s in
            let node: NodeInfo
            do throws(WireError) { node = try change(s) } catch { return .failure(error) }
            do { try inventory.save(node) } catch { return .failure(Self.storing("node \(node.name)", error)) }
            Self.commit(node, to: &s)
            return .success(node)
        }
        return try result.get()
    }

    /// A failed save as the client sees it: a name or address another node holds is a
    /// conflict; anything else (a full disk) is the daemon's trouble.
    private static func storing(_ what: String, _ error: any Error, _ tail: String = "") -> WireError {
        WireError(error is InventoryConflict ? .conflict : .internal, "storing \(what): \(error)\(tail)")
    }

    private static func commit(_ node: NodeInfo, to s: inout State) {
        s.nodes.put(node)
        s.machine?.pool.reserve(node.address, for: node.mac)
    }

    /// The node `r` adds, checked against `s`.
    private func nodeAdding(_ r: NodeAddRequest, in s: State) throws(WireError) -> NodeInfo {
        if let other = s.nodes[r.mac] { throw WireError(.conflict, "\(r.mac) is already node \(other.name)") }
        let name = r.name ?? s.nextName
        if let problem = validate(name: name, address: r.address, group: r.group, image: r.image, except: nil, in: s) { throw problem }
        var node = NodeInfo(name: name, mac: r.mac, address: r.address, group: r.group ?? s.config.pxed.defaultGroup, image: r.image,
                            kernelArgs: r.kernelArgs, bmc: r.bmc)
        if node.address == nil, let machine = s.machine { node.address = machine.address(for: r.mac, now: Int64(Date().timeIntervalSince1970)) }
        return node
    }

    /// The node `r` changes, as it is after the change, checked against `s`.
    private func nodeChanging(_ r: NodeSetRequest, in s: State) throws(WireError) -> NodeInfo {
        guard var node = find(r.node, in: s) else { throw WireError(.notFound, "no node \"\(r.node)\" (by name or MAC address)") }
        if let problem = validate(name: r.name, address: r.address, group: r.group, image: r.image.flatMap { $0.isEmpty ? nil : $0 },
                                  except: node.mac, in: s) { throw problem }
        if let nextImage = r.nextImage, !nextImage.isEmpty, ImageRef(nextImage) == nil {
            throw WireError(.invalidArgument, "\"\(nextImage)\" is not an image (NAME or NAME@REVISION)")
        }
        if let v = r.name { node.name = v }
        if let v = r.address { node.address = v }
        if r.clearAddress { node.address = nil }
        if let v = r.group { node.group = v }
        if let v = r.image { node.image = v.isEmpty ? nil : v }
        if let v = r.kernelArgs { node.kernelArgs = v.isEmpty ? nil : v }
        if let v = r.nextImage { node.nextImage = v.isEmpty ? nil : v }
        if let v = r.bmc { node.bmc = v }
        if r.clearBmc { node.bmc = nil }
        return node
    }

    public func remove(_ ref: String) throws(WireError) -> NodeInfo {
        let result: Result<NodeInfo, WireError> = state.withLock { s in
            guard let node = find(ref, in: s) else { return .failure(WireError(.notFound, "no node \"\(ref)\" (by name or MAC address)")) }
            do { try inventory.remove(name: node.name) } catch { return .failure(WireError(.internal, "removing node \(node.name): \(error)")) }
            s.nodes.remove(node.mac)
            s.machine?.pool.reserve(nil, for: node.mac)
            return .success(node)
        }
        let node = try result.get()
        try? events.publish(topic: Topic.node, type: MessageType.nodeChanged, body: NodeRef(node: node.name))
        logger.notice("node \(node.name) (\(node.mac)) removed")
        return node
    }

    private func validate(name: String?, address: IPv4Address?, group: String?, image: String?, except mac: MACAddress?, in s: State) -> WireError? {
        if let name {
            guard PxedConfig.isName(name) else { return WireError(.invalidArgument, "\"\(name)\" is not a node name (1-32 of A-Z, a-z, 0-9, \"_\", \"-\")") }
            if let other = s.nodes.named(name), other.mac != mac {
                return WireError(.conflict, "the name \(name) is already taken by \(other.mac)")
            }
        }
        if let address {
            if let other = s.nodes.holding(address), other.mac != mac {
                return WireError(.conflict, "\(address) is already node \(other.name)'s address")
            }
            if let d = s.config.dhcp, s.config.pxed.mode == .dhcp, !d.network.contains(address) {
                return WireError(.invalidArgument, "\(address) is not inside the DHCP network \(d.network)")
            }
        }
        if let group, s.config.group(group) == nil {
            return WireError(.invalidArgument, "no group \"\(group)\" in pxed.toml (groups: \(s.config.groups.map(\.name).joined(separator: ", ")))")
        }
        if let image, ImageRef(image) == nil { return WireError(.invalidArgument, "\"\(image)\" is not an image (NAME or NAME@REVISION)") }
        return nil
    }

    public func status() -> PxeStatusReply {
        let (config, active, nodes, leases) = state.withLock { s in
            (s.config, s.active, s.nodes.count, s.machine?.leases.values.filter { $0.state == .bound }.count ?? 0)
        }
        return PxeStatusReply(mode: config.pxed.mode.rawValue, active: active, interface: config.pxed.interface,
                              bootAddress: config.pxed.advertisedAddress, httpPort: config.pxed.httpPort, tftpPort: config.pxed.tftpPort,
                              nodes: nodes, leases: leases, counters: counters.snapshot, images: images)
    }

    public var statusLine: String {
        let s = status()
        return "\(s.mode)\(s.active ? "" : " (standby)") on \(s.interface): \(s.nodes) nodes, \(s.leases) leases, \(counters.value("dhcp_replied")) DHCP replies, \(counters.value("tftp_completed")) TFTP and \(counters.value("http_files")) HTTP files sent"
    }
}

/// The parts of an import received so far.
struct StagedImport {
    var entries: [NodeSpec]
    var expires: Date
    static let lifetime: TimeInterval = 300
    static let maxInProgress = 4
    static let maxEntries = 200_000
    enum Step {
        case apply([NodeSpec])
        case kept(String)
    }
}

struct IdentityRefusal: Error { var reason: String }
