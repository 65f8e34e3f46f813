import CMTypes
#if canImport(Glibc)
import Glibc
#endif
import Testing

@Suite struct InterfaceAddressesTests {
    @Test func loopbackIsListedWithItsNetwork() {
        var names: Set<String> = []
        #expect(InterfaceAddresses.forEach { names.insert($0.name) })
        #expect(names.contains("lo"))
        #expect(InterfaceAddresses.network(of: IPv4Address(127, 0, 0, 1)) == IPv4Network("127.0.0.0/8"))
        #expect(InterfaceAddresses.network(of: IPv4Address(192, 0, 2, 1)) == nil, "TEST-NET-1 is on no interface")
    }
}

@Suite struct SocketAddressTests {
    @Test func anEndpointGoesToSockaddrAndBack() {
        let e = IPv4Endpoint(address: IPv4Address(10, 77, 0, 1), port: 8067)
        let sa = e.sockaddrIn
        #expect(Int32(sa.sin_family) == AF_INET && sa.sin_port == UInt16(8067).bigEndian && sa.sin_addr.s_addr == UInt32(0x0A4D_0001).bigEndian)
        #expect(IPv4Endpoint(sa) == e)
    }
}
