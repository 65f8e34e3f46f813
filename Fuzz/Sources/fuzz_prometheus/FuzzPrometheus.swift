import FuzzSupport
import CMHealth
import CMWire

/// Scraped bytes come from the network: the exposition parser and the metrics calculator
/// must turn any of them into samples or a PrometheusParseError.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPrometheus(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if let samples = try? PrometheusTextParser.parse(bytes, maximumSamples: 10_000) {
        var calculator = NodeMetricsCalculator()
        _ = calculator.update(samples: samples, atMs: 0)
        _ = calculator.update(samples: samples, atMs: 1_000)
    }
    return 0
}

/// SwiftPM links an executable's entry point as `<module>_main`.
@_cdecl("fuzz_prometheus_main")
public func fuzzPrometheusMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzzPrometheus)
}
