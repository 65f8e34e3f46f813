import PXEProtocols
import FuzzSupport

/// A datagram on UDP port 67 or 4011 is input: it must parse or be refused with a reason, and
/// what parses must come back the same from serialize + parse.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDHCP(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    guard let message = try? DHCPMessage(parsing: bytes) else { return 0 }
    // Reading every typed view must not trap either.
    _ = (message.clientMAC, message.hostName, message.vendorClass, message.userClasses, message.isIPXE,
         message.clientArchitectures, message.requestedAddress, message.serverIdentifier, message.parameterRequestList)
    let again = try? DHCPMessage(parsing: message.serialize())
    if again != message { fatalError("serialize + parse changed the message") }
    return 0
}

/// SwiftPM links an executable's entry point as `<module>_main`.
@_cdecl("fuzz_dhcp_main")
public func fuzzDHCPMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzzDHCP)
}
