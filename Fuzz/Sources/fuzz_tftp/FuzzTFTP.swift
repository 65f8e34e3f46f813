import CMTypes
import PXEProtocols
import FuzzSupport

/// A datagram to the TFTP port is input: it must parse or be refused with a reason; what
/// parses must survive serialize + parse; its file name must be judged, its options negotiated.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTFTP(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard let packet = try? TFTPPacket(parsing: UnsafeBufferPointer(start: data, count: size)) else { return 0 }
    if (try? TFTPPacket(parsing: packet.serialize())) != packet { fatalError("serialize + parse changed the packet") }
    if case .readRequest(let file, _, let options) = packet {
        _ = try? TFTPPath.components(of: file)
        _ = TFTPNegotiation(requested: options, fileSize: size)
    }
    return 0
}

/// SwiftPM links an executable's entry point as `<module>_main`.
@_cdecl("fuzz_tftp_main")
public func fuzzTFTPMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzzTFTP)
}
