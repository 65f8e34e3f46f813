import CMTypes

/// What a DHCP server hands out on one network: a range of addresses and the options that go
/// with a lease. The server's own address is the server identifier (option 54).
public struct DHCPPool: Sendable, Equatable {
    public var server: IPv4Address
    public var subnetMask: IPv4Address
    public var first: IPv4Address
    public var last: IPv4Address
    public var routers: [IPv4Address]
    public var dnsServers: [IPv4Address]
    public var domainName: String?
    /// Seconds (option 51).
    public var leaseTime: UInt32
    /// Addresses bound to a MAC address: always that one, never to anybody else.
    public private(set) var staticLeases: [MACAddress: IPv4Address]
    /// The same, by address: whether an address is somebody's is asked for every address a
    /// search passes, so it must not cost a walk through all reservations.
    private var staticOwners: [IPv4Address: MACAddress]

    public init(server: IPv4Address, subnetMask: IPv4Address, first: IPv4Address, last: IPv4Address, routers: [IPv4Address] = [],
                dnsServers: [IPv4Address] = [], domainName: String? = nil, leaseTime: UInt32 = 3600, staticLeases: [MACAddress: IPv4Address] = [:]) {
        self.server = server
        self.subnetMask = subnetMask
        self.first = first
        self.last = last
        self.routers = routers
        self.dnsServers = dnsServers
        self.domainName = domainName
        self.leaseTime = leaseTime
        self.staticLeases = staticLeases
        staticOwners = Dictionary(staticLeases.map { ($0.value, $0.key) }, uniquingKeysWith: { a, _ in a })
    }

    /// Reserves `address` for `mac` (nil: no reservation any more).
    public mutating func reserve(_ address: IPv4Address?, for mac: MACAddress) {
        if let old = staticLeases[mac], staticOwners[old] == mac { staticOwners[old] = nil }
        staticLeases[mac] = address
        if let address { staticOwners[address] = mac }
    }

    /// The MAC address `address` is reserved for.
    public func owner(of address: IPv4Address) -> MACAddress? { staticOwners[address] }

    public func contains(_ a: IPv4Address) -> Bool { (first.rawValue...last.rawValue).contains(a.rawValue) }

    /// On the pool's network (static leases may lie outside the range).
    public func onNetwork(_ a: IPv4Address) -> Bool { a.rawValue & subnetMask.rawValue == server.rawValue & subnetMask.rawValue }
}

/// One address's lease.
public struct DHCPLease: Sendable, Equatable {
    public enum State: String, Sendable { case offered, bound, released, declined }
    public var address: IPv4Address
    public var mac: MACAddress
    public var state: State
    /// Seconds since the epoch; after it the address is free again (a declined one too).
    public var expires: Int64
    public var hostName: String?

    public init(address: IPv4Address, mac: MACAddress, state: State, expires: Int64, hostName: String? = nil) {
        self.address = address
        self.mac = mac
        self.state = state
        self.expires = expires
        self.hostName = hostName
    }
}

/// The lease side of a DHCP server (RFC 2131 section 4.3) as a pure state machine: a client
/// message and the time go in; the reply (if any), the lease changes to persist, and a line
/// for the log come out. The shell sends the reply to `destination(for:)` and stores changes.
public struct DHCPLeaseMachine: Sendable {
    public var pool: DHCPPool
    public private(set) var leases: [IPv4Address: DHCPLease] = [:]
    /// The addresses each MAC address has a lease record for: a client's own lease is found
    /// without looking at everybody's.
    private var addressesByMAC: [MACAddress: Set<IPv4Address>] = [:]
    /// How long an OFFER holds its address for the client's REQUEST.
    public var offerHold: Int64 = 60
    /// How long an address a client DECLINEd (in use by somebody else) stays out of the pool.
    public var declineHold: Int64 = 600

    public init(pool: DHCPPool, leases: [DHCPLease] = []) {
        self.pool = pool
        for l in leases { put(l) }
    }

    /// Records `lease` as its address's, keeping the index by MAC address.
    private mutating func put(_ lease: DHCPLease) {
        if let old = leases[lease.address], old.mac != lease.mac {
            addressesByMAC[old.mac]?.remove(lease.address)
            if addressesByMAC[old.mac]?.isEmpty == true { addressesByMAC[old.mac] = nil }
        }
        leases[lease.address] = lease
        addressesByMAC[lease.mac, default: []].insert(lease.address)
    }

    /// Forgets the lease record of `address`.
    private mutating func drop(_ address: IPv4Address) {
        guard let old = leases.removeValue(forKey: address) else { return }
        addressesByMAC[old.mac]?.remove(address)
        if addressesByMAC[old.mac]?.isEmpty == true { addressesByMAC[old.mac] = nil }
    }

    /// `mac`'s lease records.
    public func leases(of mac: MACAddress) -> [DHCPLease] { (addressesByMAC[mac] ?? []).compactMap { leases[$0] } }

    public struct Outcome: Sendable {
        public var reply: DHCPMessage?
        public var changed: [DHCPLease] = []
        public var note: String
    }

    public mutating func handle(_ m: DHCPMessage, now: Int64) -> Outcome {
        guard m.op == .request, let mac = m.clientMAC, let type = m.messageType else {
            return Outcome(reply: nil, note: "ignored: not a client request from an Ethernet address")
        }
        switch type {
        case .discover: return discover(m, mac: mac, now: now)
        case .request: return request(m, mac: mac, now: now)
        case .decline: return decline(m, mac: mac, now: now)
        case .release: return release(m, mac: mac, now: now)
        case .inform: return inform(m, mac: mac)
        case .offer, .ack, .nak: return Outcome(reply: nil, note: "ignored: \(type) is a server's message")
        }
    }

    // MARK: RFC 2131 4.3.1

    private mutating func discover(_ m: DHCPMessage, mac: MACAddress, now: Int64) -> Outcome {
        guard let address = choose(for: mac, requested: m.requestedAddress, now: now) else {
            return Outcome(reply: nil, note: "no address left in \(pool.first)-\(pool.last) for \(mac)")
        }
        var lease = leases[address] ?? DHCPLease(address: address, mac: mac, state: .offered, expires: 0)
        if lease.state != .bound || lease.mac != mac {
            lease = DHCPLease(address: address, mac: mac, state: .offered, expires: now + offerHold, hostName: m.hostName)
        }
        put(lease)
        return Outcome(reply: reply(.offer, to: m, address: address), changed: [lease], note: "DISCOVER from \(mac): OFFER \(address)")
    }

    /// The address `mac` would be offered now, nil when the pool is exhausted.
    public func address(for mac: MACAddress, now: Int64) -> IPv4Address? { choose(for: mac, requested: nil, now: now) }

    /// The address for `mac`: its static one; the one it has or had; the one it asks for if
    /// free; else the lowest free one in the range; else, when only offers nobody took up
    /// hold the rest, the address of the oldest such offer.
    private func choose(for mac: MACAddress, requested: IPv4Address?, now: Int64) -> IPv4Address? {
        if let fixed = pool.staticLeases[mac] { return fixed }
        if let mine = leases(of: mac).filter({ $0.state != .declined }).max(by: { $0.expires < $1.expires }),
           pool.contains(mine.address), isFree(mine.address, for: mac, now: now) {
            return mine.address
        }
        if let requested, pool.contains(requested), isFree(requested, for: mac, now: now) { return requested }
        var a = pool.first.rawValue
        while a <= pool.last.rawValue {
            let address = IPv4Address(rawValue: a)
            if address != pool.server, isFree(address, for: mac, now: now) { return address }
            if a == UInt32.max { break }
            a += 1
        }
        // An OFFER is a promise for offerHold seconds, not a lease: clients that DISCOVER
        // and never REQUEST (a flood of made-up MAC addresses, say) must not keep a real
        // client out. It may be turned away by a NAK if the old offer's client REQUESTs after
        // all (RFC 2131 4.3.2), which then starts over.
        return leases.values.filter { $0.state == .offered && $0.mac != mac && pool.contains($0.address) && pool.owner(of: $0.address) == nil }
            .min(by: { $0.expires < $1.expires })?.address
    }

    /// Nobody else holds it (a lease of another client that has not expired, another client's
    /// static lease, a recent decline).
    private func isFree(_ address: IPv4Address, for mac: MACAddress, now: Int64) -> Bool {
        if address == pool.server { return false }
        if let owner = pool.owner(of: address), owner != mac { return false }
        guard let l = leases[address] else { return true }
        if l.state == .declined { return l.expires <= now }
        return l.mac == mac || l.expires <= now || l.state == .released
    }

    // MARK: RFC 2131 4.3.2

    private mutating func request(_ m: DHCPMessage, mac: MACAddress, now: Int64) -> Outcome {
        if let server = m.serverIdentifier {
            // SELECTING: the client answers an OFFER; one not ours means it chose another server.
            guard server == pool.server else {
                if let mine = leases(of: mac).first(where: { $0.state == .offered }) {
                    drop(mine.address)
                    var freed = mine
                    freed.state = .released
                    freed.expires = now
                    return Outcome(reply: nil, changed: [freed], note: "REQUEST from \(mac) for server \(server): our offer of \(mine.address) withdrawn")
                }
                return Outcome(reply: nil, note: "REQUEST from \(mac) for server \(server): not us")
            }
            guard let wanted = m.requestedAddress ?? (m.ciaddr.rawValue != 0 ? m.ciaddr : nil) else {
                return nak(m, mac: mac, "REQUEST from \(mac) names no address")
            }
            return bind(m, mac: mac, address: wanted, now: now)
        }
        if let wanted = m.requestedAddress {
            // INIT-REBOOT: the client remembers an address. Off our network it is wrong; ours
            // or free (the lease table may have been lost) it is confirmed.
            guard pool.onNetwork(wanted) else { return nak(m, mac: mac, "REQUEST from \(mac) for \(wanted): not on this network") }
            return bind(m, mac: mac, address: wanted, now: now)
        }
        if m.ciaddr.rawValue != 0 {
            // RENEWING / REBINDING: only the client's own lease is extended.
            guard let l = leases[m.ciaddr], l.mac == mac, l.state == .bound || l.state == .offered else {
                return nak(m, mac: mac, "renewal from \(mac) for \(m.ciaddr): no lease of its own")
            }
            return bind(m, mac: mac, address: m.ciaddr, now: now)
        }
        return nak(m, mac: mac, "REQUEST from \(mac) with neither requested address nor ciaddr")
    }

    private mutating func bind(_ m: DHCPMessage, mac: MACAddress, address: IPv4Address, now: Int64) -> Outcome {
        let allowed = pool.staticLeases[mac] == address || (pool.staticLeases[mac] == nil && pool.contains(address))
        guard allowed, isFree(address, for: mac, now: now) else {
            return nak(m, mac: mac, "REQUEST from \(mac) for \(address): not available to it")
        }
        let lease = DHCPLease(address: address, mac: mac, state: .bound, expires: now + Int64(pool.leaseTime),
                              hostName: m.hostName ?? leases[address]?.hostName)
        put(lease)
        return Outcome(reply: reply(.ack, to: m, address: address), changed: [lease], note: "REQUEST from \(mac): ACK \(address) for \(pool.leaseTime) s")
    }

    private func nak(_ m: DHCPMessage, mac: MACAddress, _ why: String) -> Outcome {
        var r = DHCPMessage(op: .reply, xid: m.xid, chaddr: m.chaddr)
        r.htype = m.htype
        r.hlen = m.hlen
        r.giaddr = m.giaddr
        r.broadcast = true  // RFC 2131 4.3.2: a NAK is broadcast unless relayed
        r.messageType = .nak
        r.setOption(DHCPMessage.Code.serverIdentifier, DHCPMessage.addressBytes(pool.server))
        r.setOption(DHCPMessage.Code.message, Array(why.utf8.prefix(200)))
        return Outcome(reply: r, note: "\(why): NAK")
    }

    // MARK: RFC 2131 4.3.3, 4.3.4, 4.3.5

    private mutating func decline(_ m: DHCPMessage, mac: MACAddress, now: Int64) -> Outcome {
        guard let address = m.requestedAddress, let l = leases[address], l.mac == mac else {
            return Outcome(reply: nil, note: "DECLINE from \(mac) for an address it does not hold")
        }
        let declined = DHCPLease(address: address, mac: mac, state: .declined, expires: now + declineHold)
        put(declined)
        return Outcome(reply: nil, changed: [declined], note: "DECLINE from \(mac): \(address) is in use by another host; out of the pool for \(declineHold) s")
    }

    private mutating func release(_ m: DHCPMessage, mac: MACAddress, now: Int64) -> Outcome {
        guard var l = leases[m.ciaddr], l.mac == mac else {
            return Outcome(reply: nil, note: "RELEASE from \(mac) for \(m.ciaddr), which it does not hold")
        }
        // Kept, expired: the same client gets the same address back next time if it is free.
        l.state = .released
        l.expires = now
        put(l)
        return Outcome(reply: nil, changed: [l], note: "RELEASE from \(mac) of \(m.ciaddr)")
    }

    private func inform(_ m: DHCPMessage, mac: MACAddress) -> Outcome {
        var r = reply(.ack, to: m, address: IPv4Address(rawValue: 0))
        r.removeOption(DHCPMessage.Code.leaseTime)
        r.removeOption(DHCPMessage.Code.renewalTime)
        r.removeOption(DHCPMessage.Code.rebindingTime)
        return Outcome(reply: r, note: "INFORM from \(mac) at \(m.ciaddr): ACK with configuration only")
    }

    // MARK: Replies

    /// An OFFER or ACK with the pool's options (RFC 2131 table 3).
    func reply(_ type: DHCPMessageType, to m: DHCPMessage, address: IPv4Address) -> DHCPMessage {
        var r = DHCPMessage(op: .reply, xid: m.xid, chaddr: m.chaddr)
        r.htype = m.htype
        r.hlen = m.hlen
        r.flags = m.flags
        r.giaddr = m.giaddr
        r.ciaddr = type == .ack && m.messageType == .inform ? m.ciaddr : IPv4Address(rawValue: 0)
        r.yiaddr = address
        r.messageType = type
        r.setOption(DHCPMessage.Code.serverIdentifier, DHCPMessage.addressBytes(pool.server))
        if address.rawValue != 0 {
            r.setOption(DHCPMessage.Code.leaseTime, DHCPMessage.uint32Bytes(pool.leaseTime))
            r.setOption(DHCPMessage.Code.renewalTime, DHCPMessage.uint32Bytes(pool.leaseTime / 2))
            r.setOption(DHCPMessage.Code.rebindingTime, DHCPMessage.uint32Bytes(pool.leaseTime / 8 * 7))
        }
        r.setOption(DHCPMessage.Code.subnetMask, DHCPMessage.addressBytes(pool.subnetMask))
        if !pool.routers.isEmpty { r.setOption(DHCPMessage.Code.router, pool.routers.flatMap(DHCPMessage.addressBytes)) }
        if !pool.dnsServers.isEmpty { r.setOption(DHCPMessage.Code.dnsServer, pool.dnsServers.flatMap(DHCPMessage.addressBytes)) }
        if let domain = pool.domainName { r.setOption(DHCPMessage.Code.domainName, Array(domain.utf8)) }
        return r
    }

    /// Where a reply goes (RFC 2131 section 4.1): to the relay agent, to a client that has an
    /// address, broadcast when the client asked for it (or for a NAK), else to the offered
    /// address at the client's MAC address.
    public enum Destination: Equatable, Sendable {
        case relay(IPv4Address)
        case unicast(IPv4Address)
        case broadcast
        case hardware(IPv4Address, MACAddress)
    }

    public static func destination(for reply: DHCPMessage, request: DHCPMessage) -> Destination {
        if request.giaddr.rawValue != 0 { return .relay(request.giaddr) }
        if reply.messageType == .nak { return .broadcast }
        if request.ciaddr.rawValue != 0 { return .unicast(request.ciaddr) }
        if request.broadcast { return .broadcast }
        if let mac = request.clientMAC, reply.yiaddr.rawValue != 0 { return .hardware(reply.yiaddr, mac) }
        return .broadcast
    }
}
