import FuzzSupport
import CMWire
import NIOCore

/// Feeds arbitrary bytes through the frame decoder and the envelope decoder, as a daemon's
/// control socket would: any input must end in a value or a WireError, never a crash.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWire(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var buffer = ByteBuffer(bytes: UnsafeBufferPointer(start: data, count: size))
    while true {
        do {
            guard let payload = try Frame.decode(from: &buffer, maximumLength: 1 << 16) else { break }
            let envelope = try ReceivedEnvelope(payload: payload)
            _ = try? envelope.body(as: HealthHistoryRequest.self)
            _ = try? envelope.body(as: MetricsQuery.self)
        } catch {
            break
        }
    }
    // The same bytes as a bare payload, as if framing had been fine.
    _ = try? ReceivedEnvelope(payload: ByteBuffer(bytes: UnsafeBufferPointer(start: data, count: size)))
    return 0
}

/// SwiftPM links an executable's entry point as `<module>_main`.
@_cdecl("fuzz_wire_main")
public func fuzzWireMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzzWire)
}
