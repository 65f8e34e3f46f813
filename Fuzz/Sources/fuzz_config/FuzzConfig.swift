import FuzzSupport
import CMConfig
import CMTypes

/// A config file is input too: any text must load or fail with ConfigErrors, and the
/// position scanner must cope with whatever TOMLKit accepted. Inventory files (cmctl node
/// import, TOML and CSV) likewise, and the line editing of a clone's and a standby's
/// host values.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    _ = TOMLPositions(source: text)
    let node = NodeConfig(name: "node001", address: IPv4Address(10, 0, 0, 1), groups: ["web"])
    let cluster = ClusterConfig(name: "fuzz", domain: nil, networks: [], masters: [], nodes: [node])
    _ = try? HealthdConfig.parse(ConfigSource(path: "healthd.toml", text: text), cluster: cluster)
    _ = try? ClusterConfig.parse(ConfigSource(path: "cluster.toml", text: text))
    _ = try? VipdConfig.parse(ConfigSource(path: "vipd.toml", text: text))
    _ = try? LbdConfig.parse(ConfigSource(path: "lbd.toml", text: text))
    _ = try? PxedConfig.parse(ConfigSource(path: "pxed.toml", text: text))
    _ = try? ReplicadConfig.parse(ConfigSource(path: "replicad.toml", text: text))
    _ = try? WebdConfig.parse(ConfigSource(path: "webd.toml", text: text))
    _ = try? SnapdConfig.parse(ConfigSource(path: "snapd.toml", text: text))
    // A clone's and a standby's line editing of the host's values: any text, either side.
    let a = HostConfig.Host(name: "m1", address: IPv4Address(10, 0, 0, 1)), b = HostConfig.Host(name: "m2", address: IPv4Address(10, 0, 0, 2))
    let half = text.index(text.startIndex, offsetBy: text.count / 2)
    for file in ["replicad.toml", "vipd.toml", "pxed.toml"] {
        _ = HostConfig.rewrite(file: file, text: text, source: a, target: b)
        _ = HostConfig.merge(file: file, incoming: String(text[..<half]), own: String(text[half...]))
    }
    _ = try? InventoryFile.parseTOML(ConfigSource(path: "nodes.toml", text: text))
    _ = try? InventoryFile.parseCSV(text, file: "nodes.csv")
    return 0
}

/// SwiftPM links an executable's entry point as `<module>_main`.
@_cdecl("fuzz_config_main")
public func fuzzConfigMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzzConfig)
}
