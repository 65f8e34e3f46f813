import CMReplication
import FuzzSupport

/// The `gluster --xml` output cm-replicad reads (and whatever glusterd prints instead when it
/// is down): any bytes give a tree or a ParseError, and the volume readers take any tree.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzGlusterXML(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    if let tree = try? XMLTree.parse(text) {
        _ = GlusterCLI.parseVolumes(tree)
        _ = GlusterCLI.parseStatus(tree)
    }
    return 0
}

/// SwiftPM links an executable's entry point as `<module>_main`.
@_cdecl("fuzz_gluster_xml_main")
public func fuzzGlusterXMLMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzzGlusterXML)
}
