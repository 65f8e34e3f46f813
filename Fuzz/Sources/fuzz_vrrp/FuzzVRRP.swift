import FuzzSupport
import VRRP

/// Datagrams on the VRRP socket come from anyone on the link: the decoder must turn any bytes
/// into an advertisement or a VRRPParseError, and what it accepts must survive a round trip.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzVRRP(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if let d = try? VRRPDatagram(parsing: bytes) {
        // What was accepted must serialize to a message that parses to the same advertisement
        // (reserved bits are ignored on receipt, RFC 5798 5.2.5, so the bytes may differ there).
        let again = d.advertisement.serialize(source: d.source, destination: d.destination)
        guard let back = try? VRRPAdvertisement(parsing: again, source: d.source, destination: d.destination),
              back == d.advertisement else { fatalError("VRRP round trip differs") }
    }
    return 0
}

@_cdecl("fuzz_vrrp_main")
public func fuzzVRRPMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzzVRRP)
}
