import CMTypes

/// Ports and constants of DHCPv4 (RFC 2131) and its PXE extensions (RFC 4578).
public enum DHCP {
    public static let serverPort: UInt16 = 67
    public static let clientPort: UInt16 = 68
    /// PXE boot server discovery (proxyDHCP, PXE spec 2.1 section 2.2.4).
    public static let proxyPort: UInt16 = 4011
    /// RFC 2131 section 3: the first four octets of the options field.
    public static let magicCookie: [UInt8] = [99, 130, 83, 99]
    /// RFC 1542 section 2.1: a BOOTP message is at least 300 octets; shorter ones are padded.
    public static let minimumLength = 300
    /// The fixed part: op … file (RFC 2131 figure 1).
    public static let fixedLength = 236
}

/// Option 53 (RFC 2132 section 9.6).
public enum DHCPMessageType: UInt8, Sendable, CaseIterable {
    case discover = 1, offer, request, decline, ack, nak, release, inform
}

/// Why a datagram on port 67 is not a DHCP message this server can act on. Each case is a
/// counter (`cmctl` shows them), so `reason` names are stable.
public enum DHCPParseError: Error, Equatable, Sendable, CustomStringConvertible {
    case truncated(String)
    case badOp(UInt8)
    case badHardwareAddress(htype: UInt8, hlen: UInt8)
    case noMagicCookie
    case badOption(code: UInt8, String)
    case noMessageType

    public var reason: String {
        switch self {
        case .truncated: "truncated"
        case .badOp: "bad_op"
        case .badHardwareAddress: "bad_hardware_address"
        case .noMagicCookie: "no_magic_cookie"
        case .badOption: "bad_option"
        case .noMessageType: "no_message_type"
        }
    }

    public var description: String {
        switch self {
        case .truncated(let what): "truncated: \(what)"
        case .badOp(let op): "op \(op), neither BOOTREQUEST (1) nor BOOTREPLY (2)"
        case .badHardwareAddress(let t, let l): "hardware type \(t) with address length \(l) (hlen is at most 16)"
        case .noMagicCookie: "no DHCP magic cookie (99.130.83.99): a plain BOOTP message"
        case .badOption(let code, let why): "option \(code): \(why)"
        case .noMessageType: "no DHCP message type (option 53)"
        }
    }
}

/// A DHCPv4 message (RFC 2131 section 2) as a value: the fixed BOOTP fields and the options,
/// in the order they came. Parsing never trusts a length; serializing gives the bytes a server
/// sends. No I/O.
public struct DHCPMessage: Equatable, Sendable {
    public enum Op: UInt8, Sendable { case request = 1, reply = 2 }

    public var op: Op
    /// 1: Ethernet.
    public var htype: UInt8 = 1
    public var hlen: UInt8 = 6
    public var hops: UInt8 = 0
    public var xid: UInt32
    public var secs: UInt16 = 0
    /// Bit 15: BROADCAST (RFC 2131 section 2, figure 2).
    public var flags: UInt16 = 0
    public var ciaddr = IPv4Address(rawValue: 0)
    public var yiaddr = IPv4Address(rawValue: 0)
    public var siaddr = IPv4Address(rawValue: 0)
    public var giaddr = IPv4Address(rawValue: 0)
    /// Client hardware address, 16 octets (the first `hlen` are the address).
    public var chaddr: [UInt8]
    /// Server host name and boot file name as on the wire up to the first NUL (64 and 128
    /// octets at most): kept as bytes, so that any message comes back out unchanged.
    public var snameBytes: [UInt8] = []
    public var fileBytes: [UInt8] = []

    public var sname: String {
        get { String(decoding: snameBytes, as: UTF8.self) }
        set { snameBytes = Array(newValue.utf8.prefix(63)) }
    }

    public var file: String {
        get { String(decoding: fileBytes, as: UTF8.self) }
        set { fileBytes = Array(newValue.utf8.prefix(127)) }
    }
    /// Options in order of first appearance; RFC 3396: repeated codes are concatenated.
    public private(set) var options: [(code: UInt8, data: [UInt8])] = []

    public static func == (a: DHCPMessage, b: DHCPMessage) -> Bool {
        a.op == b.op && a.htype == b.htype && a.hlen == b.hlen && a.hops == b.hops && a.xid == b.xid && a.secs == b.secs
            && a.flags == b.flags && a.ciaddr == b.ciaddr && a.yiaddr == b.yiaddr && a.siaddr == b.siaddr && a.giaddr == b.giaddr
            && a.chaddr == b.chaddr && a.snameBytes == b.snameBytes && a.fileBytes == b.fileBytes
            && a.options.map(\.code) == b.options.map(\.code) && a.options.map(\.data) == b.options.map(\.data)
    }

    public init(op: Op, xid: UInt32, chaddr: [UInt8]) {
        self.op = op
        self.xid = xid
        self.chaddr = Array((chaddr + Array(repeating: 0, count: 16)).prefix(16))
    }

    // MARK: Options

    public enum Code {
        public static let pad: UInt8 = 0, end: UInt8 = 255
        public static let subnetMask: UInt8 = 1, router: UInt8 = 3, dnsServer: UInt8 = 6, hostName: UInt8 = 12
        public static let domainName: UInt8 = 15, vendorSpecific: UInt8 = 43, requestedAddress: UInt8 = 50
        public static let leaseTime: UInt8 = 51, overload: UInt8 = 52, messageType: UInt8 = 53, serverIdentifier: UInt8 = 54
        public static let parameterRequestList: UInt8 = 55, message: UInt8 = 56, maxMessageSize: UInt8 = 57
        public static let renewalTime: UInt8 = 58, rebindingTime: UInt8 = 59, vendorClass: UInt8 = 60, clientIdentifier: UInt8 = 61
        public static let tftpServerName: UInt8 = 66, bootfileName: UInt8 = 67, userClass: UInt8 = 77
        public static let clientArchitecture: UInt8 = 93, clientNetworkInterface: UInt8 = 94, clientMachineID: UInt8 = 97
        /// iPXE's encapsulated options (iPXE sets it on every request it sends).
        public static let ipxeEncapsulated: UInt8 = 175
    }

    public func option(_ code: UInt8) -> [UInt8]? { options.first { $0.code == code }?.data }

    /// Sets (or replaces) an option, keeping its place when it was there already.
    public mutating func setOption(_ code: UInt8, _ data: [UInt8]) {
        if let i = options.firstIndex(where: { $0.code == code }) {
            options[i].data = data
        } else {
            options.append((code, data))
        }
    }

    public mutating func removeOption(_ code: UInt8) { options.removeAll { $0.code == code } }

    public var messageType: DHCPMessageType? {
        get { option(Code.messageType).flatMap { $0.count == 1 ? DHCPMessageType(rawValue: $0[0]) : nil } }
        set {
            if let newValue { setOption(Code.messageType, [newValue.rawValue]) } else { removeOption(Code.messageType) }
        }
    }

    /// The client's MAC address, for Ethernet (htype 1, hlen 6).
    public var clientMAC: MACAddress? { htype == 1 && hlen == 6 ? MACAddress(bytes: Array(chaddr.prefix(6))) : nil }

    public var broadcast: Bool {
        get { flags & 0x8000 != 0 }
        set { flags = newValue ? flags | 0x8000 : flags & ~0x8000 }
    }

    public func address(_ code: UInt8) -> IPv4Address? {
        guard let d = option(code), d.count == 4 else { return nil }
        return IPv4Address(rawValue: Self.u32(d, 0))
    }

    public func addresses(_ code: UInt8) -> [IPv4Address]? {
        guard let d = option(code), !d.isEmpty, d.count % 4 == 0 else { return nil }
        return stride(from: 0, to: d.count, by: 4).map { (i: Int) -> IPv4Address in
            IPv4Address(rawValue: Self.u32(d, i))
        }
    }

    public func uint32(_ code: UInt8) -> UInt32? {
        guard let d = option(code), d.count == 4 else { return nil }
        return Self.u32(d, 0)
    }

    /// A text option (host name, domain, vendor class, boot file): bytes up to the first NUL.
    public func text(_ code: UInt8) -> String? {
        guard let d = option(code) else { return nil }
        return String(decoding: d.prefix { $0 != 0 }, as: UTF8.self)
    }

    public var requestedAddress: IPv4Address? { address(Code.requestedAddress) }
    public var serverIdentifier: IPv4Address? { address(Code.serverIdentifier) }
    public var hostName: String? { text(Code.hostName) }
    public var vendorClass: String? { text(Code.vendorClass) }
    public var parameterRequestList: [UInt8] { option(Code.parameterRequestList) ?? [] }

    /// Option 93 (RFC 4578 section 2.1): the client's pre-boot architectures, 0 = BIOS x86,
    /// 7 = EFI x86-64 (IANA "Processor Architecture Types").
    public var clientArchitectures: [UInt16] {
        guard let d = option(Code.clientArchitecture), d.count % 2 == 0 else { return [] }
        return stride(from: 0, to: d.count, by: 2).map { UInt16(d[$0]) << 8 | UInt16(d[$0 + 1]) }
    }

    /// RFC 3004 user classes: length-prefixed strings; iPXE sends the bare "iPXE" instead.
    public var userClasses: [String] {
        guard let d = option(Code.userClass), !d.isEmpty else { return [] }
        var out: [String] = [], i = 0
        while i < d.count {
            let n = Int(d[i])
            guard n > 0, i + 1 + n <= d.count else { return [String(decoding: d, as: UTF8.self)] }
            out.append(String(decoding: d[(i + 1)..<(i + 1 + n)], as: UTF8.self))
            i += 1 + n
        }
        return out
    }

    /// iPXE asking: chainloaded firmware that should get an HTTP script, not iPXE again.
    public var isIPXE: Bool { option(Code.ipxeEncapsulated) != nil || userClasses.contains("iPXE") }

    /// PXE firmware (option 60 starts with "PXEClient").
    public var isPXEClient: Bool { vendorClass?.hasPrefix("PXEClient") ?? false }

    // MARK: Parsing

    public init(parsing bytes: some Collection<UInt8>) throws(DHCPParseError) {
        let b = Array(bytes)
        guard b.count >= DHCP.fixedLength + 4 else { throw .truncated("\(b.count) octets, a DHCP message has at least \(DHCP.fixedLength + 4)") }
        guard let op = Op(rawValue: b[0]) else { throw .badOp(b[0]) }
        self.op = op
        htype = b[1]
        hlen = b[2]
        guard hlen <= 16 else { throw .badHardwareAddress(htype: htype, hlen: hlen) }
        hops = b[3]
        xid = Self.u32(b, 4)
        secs = UInt16(b[8]) << 8 | UInt16(b[9])
        flags = UInt16(b[10]) << 8 | UInt16(b[11])
        ciaddr = IPv4Address(rawValue: Self.u32(b, 12))
        yiaddr = IPv4Address(rawValue: Self.u32(b, 16))
        siaddr = IPv4Address(rawValue: Self.u32(b, 20))
        giaddr = IPv4Address(rawValue: Self.u32(b, 24))
        chaddr = Array(b[28..<44])
        let snameField = Array(b[44..<108]), fileField = Array(b[108..<236])
        guard Array(b[236..<240]) == DHCP.magicCookie else { throw .noMagicCookie }

        var collected: [(code: UInt8, data: [UInt8])] = []
        try Self.parseOptions(b[240...], into: &collected, field: "options")
        // RFC 2131 section 4.1, RFC 2132 9.3: option 52 moves more options into file/sname.
        let overload = collected.first { $0.code == Code.overload }?.data.first ?? 0
        if overload & 1 != 0 { try Self.parseOptions(fileField[...], into: &collected, field: "file") }
        if overload & 2 != 0 { try Self.parseOptions(snameField[...], into: &collected, field: "sname") }
        snameBytes = overload & 2 != 0 ? [] : Array(snameField.prefix { $0 != 0 })
        fileBytes = overload & 1 != 0 ? [] : Array(fileField.prefix { $0 != 0 })
        options = collected.filter { $0.code != Code.overload }
        guard messageType != nil else { throw .noMessageType }
    }

    /// TLV options up to END (or the end of the field); a repeated code is appended to the
    /// first one (RFC 3396).
    static func parseOptions(_ b: ArraySlice<UInt8>, into out: inout [(code: UInt8, data: [UInt8])], field: String) throws(DHCPParseError) {
        var i = b.startIndex
        while i < b.endIndex {
            let code = b[i]
            if code == Code.pad { i += 1; continue }
            if code == Code.end { return }
            guard i + 1 < b.endIndex else { throw .badOption(code: code, "no length octet at the end of \(field)") }
            let n = Int(b[i + 1])
            guard i + 2 + n <= b.endIndex else { throw .badOption(code: code, "length \(n) runs past the end of \(field)") }
            let data = Array(b[(i + 2)..<(i + 2 + n)])
            if let k = out.firstIndex(where: { $0.code == code }) {
                out[k].data += data
            } else {
                out.append((code, data))
            }
            i += 2 + n
        }
        // RFC 2131 says END is required; many clients end exactly at the field's end. Accept.
    }

    static func u32(_ b: [UInt8], _ i: Int) -> UInt32 {
        let hi = UInt32(b[i]) << 24 | UInt32(b[i + 1]) << 16
        return hi | UInt32(b[i + 2]) << 8 | UInt32(b[i + 3])
    }

    // MARK: Serializing

    /// The message on the wire: fixed fields, cookie, options (values over 255 octets split as
    /// RFC 3396 says), END, padded to 300 octets.
    public func serialize() -> [UInt8] {
        var b: [UInt8] = [op.rawValue, htype, hlen, hops]
        b.reserveCapacity(DHCP.minimumLength + 64)
        Self.put32(&b, xid)
        b += [UInt8(secs >> 8), UInt8(secs & 0xff), UInt8(flags >> 8), UInt8(flags & 0xff)]
        for a in [ciaddr, yiaddr, siaddr, giaddr] { Self.put32(&b, a.rawValue) }
        b += Array((chaddr + Array(repeating: 0, count: 16)).prefix(16))
        b += Self.field(snameBytes, 64)
        b += Self.field(fileBytes, 128)
        b += DHCP.magicCookie
        for (code, data) in options {
            var rest = data[...]
            repeat {
                let chunk = rest.prefix(255)
                b += [code, UInt8(chunk.count)] + chunk
                rest = rest.dropFirst(chunk.count)
            } while !rest.isEmpty
        }
        b.append(Code.end)
        if b.count < DHCP.minimumLength { b += Array(repeating: 0, count: DHCP.minimumLength - b.count) }
        return b
    }

    static func put32(_ b: inout [UInt8], _ v: UInt32) { b += [UInt8(v >> 24), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)] }

    /// A NUL-padded field of `size` octets (full without a NUL when the text fills it).
    static func field(_ text: [UInt8], _ size: Int) -> [UInt8] {
        let bytes = Array(text.prefix(size))
        return bytes + Array(repeating: 0, count: size - bytes.count)
    }
}

extension DHCPMessage {
    public static func addressBytes(_ a: IPv4Address) -> [UInt8] {
        [UInt8(a.rawValue >> 24), UInt8(a.rawValue >> 16 & 0xff), UInt8(a.rawValue >> 8 & 0xff), UInt8(a.rawValue & 0xff)]
    }

    public static func uint32Bytes(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)] }
}
