import CMHealth

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

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

@_cdecl("fuzz_prometheus_main")
public func fuzzPrometheusMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv, fuzzPrometheus)
}
