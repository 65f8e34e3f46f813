import CMTypes
import Foundation

/// One VRRP virtual router: vipd.toml(5) `[[instance]]`.
public struct VRRPInstanceConfig: Sendable, Equatable {
    public var name: String
    public var interface: String
    public var vrid: Int
    public var priority: Int
    /// Advertisement_Interval; a whole number of centiseconds, 10 ms … 40.95 s.
    public var advertInterval: Duration
    public var preempt: Bool
    public var preemptDelay: Duration
    /// Preempt only while cm-replicad says the cluster volume is whole on this master (every
    /// brick up, nothing to heal, this master's clients connected to every brick): a master
    /// that comes back takes the VIP only once its brick has the other's writes.
    public var preemptAfterSync: Bool
    public var addresses: [IPv4InterfaceAddress]
    /// The address adverts are sent from; nil: the interface's first IPv4 address.
    public var sourceAddress: IPv4Address?
    /// Unicast peers instead of the multicast group (networks without multicast).
    public var unicastPeers: [IPv4Address]
    public var garpCount: Int
    public var garpInterval: Duration
    /// A second burst of gratuitous ARPs this long after becoming master (0: none), for
    /// neighbours that ignored the first one (Linux ignores an update within locktime, 1 s,
    /// of the last), like keepalived's garp_master_delay.
    public var garpMasterDelay: Duration
    /// Adverts, ARP and the virtual addresses on a macvlan interface with the virtual router
    /// MAC 00:00:5e:00:01:VRID (RFC 5798 7.3), like keepalived's use_vmac.
    public var useVMAC: Bool
    /// That interface's name; default "vrrp.VRID".
    public var vmacInterface: String
    public var trackChecks: [CheckID]
    public var trackInterfaces: [String]
    /// Subtracted from the priority for each tracked check or interface that is down.
    public var trackWeight: Int
    public var notifyMaster: [String]?
    public var notifyBackup: [String]?
    public var notifyFault: [String]?
    /// Run on every state change with INSTANCE-NAME STATE PRIORITY appended, like keepalived's `notify`.
    public var notify: [String]?

    public init(name: String, interface: String, vrid: Int, priority: Int = 100, advertInterval: Duration = .seconds(1),
                preempt: Bool = true, preemptDelay: Duration = .zero, preemptAfterSync: Bool = false, addresses: [IPv4InterfaceAddress],
                sourceAddress: IPv4Address? = nil, unicastPeers: [IPv4Address] = [], garpCount: Int = 5, garpInterval: Duration = .zero, garpMasterDelay: Duration = .seconds(5),
                useVMAC: Bool = false, vmacInterface: String? = nil, trackChecks: [CheckID] = [],
                trackInterfaces: [String] = [], trackWeight: Int = 50,
                notifyMaster: [String]? = nil, notifyBackup: [String]? = nil, notifyFault: [String]? = nil, notify: [String]? = nil) {
        self.name = name
        self.interface = interface
        self.vrid = vrid
        self.priority = priority
        self.advertInterval = advertInterval
        self.preempt = preempt
        self.preemptDelay = preemptDelay
        self.preemptAfterSync = preemptAfterSync
        self.addresses = addresses
        self.sourceAddress = sourceAddress
        self.unicastPeers = unicastPeers
        self.garpCount = garpCount
        self.garpInterval = garpInterval
        self.garpMasterDelay = garpMasterDelay
        self.useVMAC = useVMAC
        self.vmacInterface = vmacInterface ?? "vrrp.\(vrid)"
        self.trackChecks = trackChecks
        self.trackInterfaces = trackInterfaces
        self.trackWeight = trackWeight
        self.notifyMaster = notifyMaster
        self.notifyBackup = notifyBackup
        self.notifyFault = notifyFault
        self.notify = notify
    }

    /// Advertisement_Interval in centiseconds, as VRRP carries it.
    public var advertIntervalCentiseconds: UInt16 {
        UInt16(clamping: advertInterval.components.seconds * 100 + advertInterval.components.attoseconds / 10_000_000_000_000_000)
    }
}

/// /etc/clustermaker/vipd.toml — vipd.toml(5).
public struct VipdConfig: Sendable, Equatable {
    public struct Daemon: Sendable, Equatable {
        /// The instance whose state is this master's role (active = master of it); nil: the first.
        public var roleInstance: String?
        /// SCHED_RR priority of the VRRP threads (1…99); 0 leaves normal scheduling.
        public var realtimePriority = 10
    }

    public var vipd = Daemon()
    public var instances: [VRRPInstanceConfig] = []

    public init() {}

    public static let fileName = "vipd.toml"

    public static func load(configDir: String) throws(ConfigErrors) -> VipdConfig {
        try parse(ConfigSource.read((configDir as NSString).appendingPathComponent(fileName)))
    }

    /// The instance that decides the role.
    public var roleInstanceName: String? { vipd.roleInstance ?? instances.first?.name }

    public static func parse(_ source: ConfigSource) throws(ConfigErrors) -> VipdConfig {
        let doc = try ConfigDocument(source)
        let root = doc.rootReader
        var config = VipdConfig()

        let v = root.table("vipd")
        config.vipd.roleInstance = v.string("role_instance")
        config.vipd.realtimePriority = v.int("realtime_priority", range: 0...99, default: 10)
        v.finish()

        var names = Set<String>(), vrids = [String: String](), vmacs = [String: String]()
        for t in root.tables("instance") {
            if let instance = parseInstance(t) {
                if !names.insert(instance.name).inserted {
                    t.error("name", "duplicate instance name \"\(instance.name)\"")
                } else if let other = vrids["\(instance.interface)/\(instance.vrid)"] {
                    t.error("vrid", "VRID \(instance.vrid) on \(instance.interface) is already instance \"\(other)\"'s")
                } else if instance.useVMAC, let other = vmacs[instance.vmacInterface] {
                    t.error("vmac_interface", "\(instance.vmacInterface) is already instance \"\(other)\"'s virtual-MAC interface")
                } else {
                    if instance.useVMAC { vmacs[instance.vmacInterface] = instance.name }
                    vrids["\(instance.interface)/\(instance.vrid)"] = instance.name
                    config.instances.append(instance)
                }
            }
            t.finish()
        }
        if let role = config.vipd.roleInstance, !names.contains(role) {
            v.error("role_instance", "no [[instance]] is named \"\(role)\"")
        }
        root.finish()
        try doc.check()
        return config
    }

    static func parseInstance(_ t: TableReader) -> VRRPInstanceConfig? {
        let name = t.string("name", required: true)
        if let name {
            t.label = "instance \"\(name)\""
            let valid = (1...32).contains(name.utf8.count) && name.utf8.allSatisfy { TOMLPositions.isBare($0) }
            if !valid { t.error("name", "\"\(name)\" is not a valid instance name (1-32 of A-Z, a-z, 0-9, \"_\", \"-\")") }
        }
        let interface = t.string("interface", required: true)
        if let interface, !isInterfaceName(interface) { t.error("interface", "\"\(interface)\" is not an interface name (1-15 characters, no \"/\" or spaces)") }
        let vrid = t.int("vrid", range: 1...255, required: true)
        let priority = t.int("priority", range: 1...255, default: 100)
        let interval = t.duration("advert_interval", range: .milliseconds(10) ... .milliseconds(40_950), default: .seconds(1))
        if interval.components.attoseconds % 10_000_000_000_000_000 != 0 {
            t.error("advert_interval", "\(DurationText.format(interval)) is not a whole number of centiseconds (VRRPv3 counts in 10 ms)")
        }
        let preempt = t.bool("preempt", default: true)
        let preemptDelay = t.duration("preempt_delay", range: .zero ... .seconds(3600), default: .zero)
        if preemptDelay > .zero, !preempt { t.error("preempt_delay", "has no effect with preempt = false") }
        let preemptAfterSync = t.bool("preempt_after_sync", default: false)
        if preemptAfterSync, !preempt { t.error("preempt_after_sync", "has no effect with preempt = false") }

        var addresses: [IPv4InterfaceAddress] = []
        if let texts = t.stringArray("addresses") {
            for text in texts {
                guard let a = IPv4InterfaceAddress(text) else {
                    t.error("addresses", "\"\(text)\" is not an IPv4 address with optional prefix length (e.g. \"10.77.0.100/24\")")
                    continue
                }
                if addresses.contains(where: { $0.address == a.address }) { t.error("addresses", "\(a.address) is listed twice") }
                addresses.append(a)
            }
            if texts.isEmpty { t.error("addresses", "must list at least one virtual address") }
            if texts.count > 20 { t.error("addresses", "\(texts.count) addresses; at most 20 fit one advertisement here") }
        } else if !t.has("addresses") {
            t.tableError("missing required key \"addresses\"")
        }
        let source = t.ipv4("source_address")
        var peers: [IPv4Address] = []
        for text in t.stringArray("unicast_peers") ?? [] {
            guard let a = IPv4Address(text) else { t.error("unicast_peers", "\"\(text)\" is not an IPv4 address"); continue }
            peers.append(a)
        }
        let garpCount = t.int("garp_count", range: 0...100, default: 5)
        let garpInterval = t.duration("garp_interval", range: .zero ... .seconds(10), default: .zero)
        let garpMasterDelay = t.duration("garp_master_delay", range: .zero ... .seconds(3600), default: .seconds(5))
        let useVMAC = t.bool("use_vmac", default: false)
        let vmacInterface = t.string("vmac_interface")
        if let vmacInterface {
            if !isInterfaceName(vmacInterface) {
                t.error("vmac_interface", "\"\(vmacInterface)\" is not an interface name (1-15 characters, no \"/\" or spaces)")
            } else if !useVMAC {
                t.error("vmac_interface", "has no effect without use_vmac = true")
            } else if vmacInterface == interface {
                t.error("vmac_interface", "must differ from interface \"\(vmacInterface)\": it is created on top of it")
            }
        }
        var checks: [CheckID] = []
        for text in t.stringArray("track_checks") ?? [] {
            guard let id = CheckID(text) else { t.error("track_checks", "\"\(text)\" is not a check id (CHECK@NODE, as cmctl health list shows)"); continue }
            checks.append(id)
        }
        let trackInterfaces = t.stringArray("track_interfaces") ?? []
        for i in trackInterfaces where !isInterfaceName(i) { t.error("track_interfaces", "\"\(i)\" is not an interface name") }
        let trackWeight = t.int("track_weight", range: 1...254, default: 50)
        if priority == 255, !checks.isEmpty || !trackInterfaces.isEmpty {
            t.error("priority", "255 is the address owner's priority, which tracking cannot lower; use 254 or less with track_checks/track_interfaces")
        }
        func command(_ key: String) -> [String]? {
            guard let c = t.stringArray(key) else { return nil }
            guard let program = c.first else { t.error(key, "must name a program"); return nil }
            guard program.hasPrefix("/") else { t.error(key, "\"\(program)\" must be an absolute path (there is no shell and no PATH search)"); return nil }
            return c
        }
        let notifyMaster = command("notify_master"), notifyBackup = command("notify_backup")
        let notifyFault = command("notify_fault"), notify = command("notify")

        guard let name, let interface, let vrid else { return nil }
        return VRRPInstanceConfig(name: name, interface: interface, vrid: vrid, priority: priority, advertInterval: interval,
                                  preempt: preempt, preemptDelay: preemptDelay, preemptAfterSync: preemptAfterSync, addresses: addresses, sourceAddress: source,
                                  unicastPeers: peers, garpCount: garpCount, garpInterval: garpInterval, garpMasterDelay: garpMasterDelay,
                                  useVMAC: useVMAC, vmacInterface: vmacInterface, trackChecks: checks,
                                  trackInterfaces: trackInterfaces, trackWeight: trackWeight,
                                  notifyMaster: notifyMaster, notifyBackup: notifyBackup, notifyFault: notifyFault, notify: notify)
    }

    static func isInterfaceName(_ s: String) -> Bool {
        (1...15).contains(s.utf8.count) && s != "." && s != ".." && !s.utf8.contains { $0 <= 0x20 || $0 == UInt8(ascii: "/") || $0 >= 0x7f }
    }
}
