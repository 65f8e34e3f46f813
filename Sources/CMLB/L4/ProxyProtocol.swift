import Glibc

/// The PROXY protocol version 2 header (haproxy's proxy-protocol.txt, section 2.2) for a TCP
/// connection over IPv4: the server learns the client's address and port.
enum ProxyProtocol {
    static let signature: [UInt8] = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]

    static func v2Header(client: SocketAddressV4?, local: SocketAddressV4?) -> [UInt8]? {
        guard let client, let local else { return nil }
        return v2Header(client: client.address, local: local.address)
    }

    static func v2Header(client c: sockaddr_in, local l: sockaddr_in) -> [UInt8] {
        var h = signature
        h += [0x21, 0x11, 0x00, 12]  // version 2, PROXY; TCP over IPv4; 12 bytes of addresses
        withUnsafeBytes(of: c.sin_addr.s_addr) { h += $0 }  // network order already
        withUnsafeBytes(of: l.sin_addr.s_addr) { h += $0 }
        withUnsafeBytes(of: c.sin_port) { h += $0 }
        withUnsafeBytes(of: l.sin_port) { h += $0 }
        return h
    }
}
