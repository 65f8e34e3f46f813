// swift-tools-version:6.1
// libFuzzer targets, kept out of the main package so it builds and tests without fuzzer flags.
// Build (scripts/fuzz does this):
//   swift build -c debug -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -use-ld=lld
import Foundation
import PackageDescription

// A path dependency's identity is its directory name, which depends on where the repo was cloned.
let mainPackage = URL(fileURLWithPath: Context.packageDirectory).deletingLastPathComponent().lastPathComponent.lowercased()

let package = Package(
    name: "ClusterMakerFuzz",
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        .target(name: "FuzzSupport"),
        .executableTarget(name: "fuzz_wire", dependencies: [
            "FuzzSupport", .product(name: "CMWire", package: mainPackage), .product(name: "NIOCore", package: "swift-nio"),
        ]),
        .executableTarget(name: "fuzz_prometheus", dependencies: [
            "FuzzSupport", .product(name: "CMWire", package: mainPackage), .product(name: "CMHealth", package: mainPackage),
        ]),
        .executableTarget(name: "fuzz_vrrp", dependencies: ["FuzzSupport", .product(name: "VRRP", package: mainPackage)]),
        .executableTarget(name: "fuzz_dhcp", dependencies: ["FuzzSupport", .product(name: "PXEProtocols", package: mainPackage)]),
        .executableTarget(name: "fuzz_tftp", dependencies: ["FuzzSupport", .product(name: "PXEProtocols", package: mainPackage)]),
        .executableTarget(name: "fuzz_gluster_xml", dependencies: ["FuzzSupport", .product(name: "CMReplication", package: mainPackage)]),
        .executableTarget(name: "fuzz_config", dependencies: ["FuzzSupport", .product(name: "CMConfig", package: mainPackage)]),
        .executableTarget(name: "fuzz_web", dependencies: [
            "FuzzSupport", .product(name: "CMConsole", package: mainPackage), .product(name: "CMAuth", package: mainPackage),
        ]),
        .executableTarget(name: "fuzz_lb_http", dependencies: [
            "FuzzSupport", .product(name: "CMLB", package: mainPackage), .product(name: "CMConfig", package: mainPackage),
            .product(name: "Logging", package: "swift-log"),
        ]),
    ]
)
