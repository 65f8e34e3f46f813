import CMTypes
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
