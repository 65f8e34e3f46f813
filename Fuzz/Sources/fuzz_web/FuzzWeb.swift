import CMAuth
import CMConsole
import FuzzSupport
import Foundation

/// What a browser or an admin's file hands the console: form bodies, the nodes page's query,
/// a login's `next`, a users file. Any bytes must parse or be refused, never crash; a
/// redirect target must stay on this site; whatever a form carries comes out of the pages
/// escaped.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWeb(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    let form = Form.parse(text)
    let query = NodeQuery(query: form)
    let rows = [NodeRow(name: form["name"] ?? text, address: form["address"] ?? "10.0.0.1", mac: "", group: form["group"] ?? "", image: "",
                        boot: "booted", lastSeen: nil, health: nil, checksDown: 0, checks: 0)]
    let page = Views.nodes(.success(rows), query: query)
    // The pages have no element of this name: one in the output came from the input.
    precondition(!page.text.contains("<x-fuzz"), "unescaped text in a page")
    let next = Form.safeNext(form["next"] ?? text)
    precondition(next.hasPrefix("/") && !next.hasPrefix("//") && !next.hasPrefix("/\\"), "a redirect off the site: \(next)")
    _ = try? UsersFile.parse(text, path: "webd-users")
    _ = HTML.escape(text)
    return 0
}

/// SwiftPM links an executable's entry point as `<module>_main`.
@_cdecl("fuzz_web_main")
public func fuzzWebMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzzWeb)
}
