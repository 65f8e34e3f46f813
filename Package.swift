// swift-tools-version:6.1
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
]

let package = Package(
    name: "ClusterMaker",
    products: [
        .executable(name: "cm-healthd", targets: ["cm-healthd"]),
        .executable(name: "cm-vipd", targets: ["cm-vipd"]),
        .executable(name: "cm-lbd", targets: ["cm-lbd"]),
        .executable(name: "cm-pxed", targets: ["cm-pxed"]),
        .executable(name: "cm-replicad", targets: ["cm-replicad"]),
        .executable(name: "cm-webd", targets: ["cm-webd"]),
        .executable(name: "cm-snapd", targets: ["cm-snapd"]),
        .executable(name: "cmctl", targets: ["cmctl"]),
        .library(name: "CMWire", targets: ["CMWire"]),
        .library(name: "CMConfig", targets: ["CMConfig"]),
        .library(name: "CMHealth", targets: ["CMHealth"]),
        .library(name: "VRRP", targets: ["VRRP"]),
        .library(name: "PXEProtocols", targets: ["PXEProtocols"]),
        .library(name: "CMVIP", targets: ["CMVIP"]),
        .library(name: "CMLB", targets: ["CMLB"]),
        .library(name: "CMPXE", targets: ["CMPXE"]),
        .library(name: "CMImage", targets: ["CMImage"]),
        .library(name: "CMReplication", targets: ["CMReplication"]),
        .library(name: "CMWeb", targets: ["CMWeb"]),
        .library(name: "CMConsole", targets: ["CMConsole"]),
        .library(name: "CMAuth", targets: ["CMAuth"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        // cm-webd: the HTTP server (no swift-configuration: webd.toml is read like every daemon's).
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth", from: "2.5.0"),
    ],
    targets: [
        .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd", providers: [.apt(["libsystemd-dev"])]),
        // Kernel headers Glibc's module leaves out (netlink, AF_PACKET); header only, nothing to link.
        .systemLibrary(name: "CLinux"),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        // Linux-PAM, for the web console's logins with the system's accounts.
        .systemLibrary(name: "CPAM", pkgConfig: "pam", providers: [.apt(["libpam0g-dev"])]),

        .target(name: "CMTypes", dependencies: ["CLinux"], swiftSettings: swiftSettings),
        .target(name: "CMWire", dependencies: [
            "CMTypes",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOFoundationCompat", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings),
        .target(name: "CMDaemon", dependencies: [
            "CSystemd", "CMWire", "CMConfig",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ], swiftSettings: swiftSettings),
        .target(name: "CMConfig", dependencies: [
            "CMTypes",
            .product(name: "TOMLKit", package: "TOMLKit"),
        ], swiftSettings: swiftSettings),
        .target(name: "CMStore", dependencies: [
            .product(name: "GRDB", package: "GRDB.swift"),
        ], swiftSettings: swiftSettings),
        .target(name: "CMHealth", dependencies: [
            "CMTypes", "CMWire", "CMConfig", "CMStore", "CCurl", "CLinux",
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ], swiftSettings: swiftSettings),
        // Pure VRRPv3 packet codec: no I/O, fuzzed.
        .target(name: "VRRP", dependencies: ["CMTypes"], swiftSettings: swiftSettings),
        // cm-pxed's protocols as pure values: DHCPv4 codec and lease machine, TFTP codec. No I/O, fuzzed.
        .target(name: "PXEProtocols", dependencies: ["CMTypes"], swiftSettings: swiftSettings),
        .target(name: "CMVIP", dependencies: [
            "CMTypes", "CMWire", "CMConfig", "CMStore", "VRRP", "CLinux",
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings),
        // Load balancer: server selection (pure), TCP and HTTP proxying on its own epoll loops.
        // HTTP is parsed by SwiftNIO's HTTP/1 parser, the llhttp that NIOHTTP1 vendors: its
        // CNIOLLHTTP module is not a product of swift-nio, it comes with NIOHTTP1.
        .target(name: "CMLB", dependencies: [
            "CMTypes", "CMWire", "CMConfig", "CLinux",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ],
        // Release builds leave out the run-time exclusivity checks in the proxy's hot paths: a
        // third of TCP mode's user-space time went to them; bench-lb TCP keep-alive 1.00 → 1.05-1.10
        // of HAProxy (2026-12-02). Debug builds (and so the tests) keep them.
        swiftSettings: swiftSettings + [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]),
        // Node OS images: the revision store, builds (mmdebstrap, apt in a chroot), tree diffs.
        .target(name: "CMImage", dependencies: ["CMTypes"], swiftSettings: swiftSettings),
        // cm-snapd's core: backends by filesystem, data sets (directories, SQLite, PostgreSQL),
        // timeline retention, the service behind its socket.
        .target(name: "CMSnap", dependencies: [
            "CLinux", "CMTypes", "CMConfig", "CMWire",
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings),
        // The cluster filesystem: the GlusterFS volume (gluster --xml) and nfs-ganesha's exports.
        .target(name: "CMReplication", dependencies: [
            "CMTypes", "CMConfig", "CMImage", "CMWire",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "GRDB", package: "GRDB.swift"),
        ], swiftSettings: swiftSettings),
        // Network boot: DHCP/proxyDHCP, TFTP and HTTP servers, node inventory.
        .target(name: "CMPXE", dependencies: [
            "CMTypes", "CMImage", "CMWire", "CMConfig", "CMStore", "PXEProtocols",
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ], swiftSettings: swiftSettings),

        // The web console's accounts: the users file and bcrypt (cm-webd checks, cmctl web passwd writes).
        .target(name: "CMAuth", dependencies: [
            "CPAM",
            .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
        ], swiftSettings: swiftSettings),
        // The web console's pure parts: pages as HTML text, node lists, forms, sessions, the suite's
        // metrics, and the client that asks each daemon over CMWire. No HTTP server: fuzzed.
        .target(name: "CMConsole", dependencies: [
            "CMTypes", "CMWire",
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings),
        // The web console: pages, JSON API, /metrics, login and sessions; data from the daemons over CMWire.
        .target(name: "CMWeb", dependencies: [
            "CMTypes", "CMWire", "CMConfig", "CMAuth", "CMConsole",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdTLS", package: "hummingbird"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ], swiftSettings: swiftSettings),

        .executableTarget(name: "cm-healthd", dependencies: [
            "CMHealth", "CMDaemon", "CMConfig", "CMWire",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings),
        .executableTarget(name: "cm-vipd", dependencies: [
            "CMVIP", "CMDaemon", "CMConfig", "CMWire",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings),
        .executableTarget(name: "cm-lbd", dependencies: [
            "CMLB", "CMDaemon", "CMConfig", "CMWire",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings),
        .executableTarget(name: "cm-pxed", dependencies: [
            "CMPXE", "CMDaemon", "CMConfig", "CMWire",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings),
        .executableTarget(name: "cm-replicad", dependencies: [
            "CMReplication", "CMDaemon", "CMConfig", "CMWire", "CMTypes",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings),
        .executableTarget(name: "cm-snapd", dependencies: [
            "CMSnap", "CMDaemon", "CMConfig", "CMWire", "CMTypes",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings),
        .executableTarget(name: "cm-webd", dependencies: [
            "CMWeb", "CMAuth", "CMConsole", "CMDaemon", "CMConfig", "CMWire", "CMTypes",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings),
        .executableTarget(name: "cmctl", dependencies: [
            "CMWire", "CMConfig", "CMDaemon", "CMImage", "CMReplication", "CMTypes", "CMAuth",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: swiftSettings),

        .testTarget(name: "CMReplicationTests", dependencies: ["CMReplication", "CMImage", "CMConfig", "CMTypes", "CMWire",
                                                      .product(name: "GRDB", package: "GRDB.swift")], exclude: ["Fixtures"], swiftSettings: swiftSettings),
        .testTarget(name: "CMWebTests", dependencies: [
            "CMWeb", "CMAuth", "CMConsole", "CMWire", "CMConfig", "CMTypes",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdTesting", package: "hummingbird"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: swiftSettings),
        .testTarget(name: "CMImageTests", dependencies: ["CMImage", "CMTypes"], swiftSettings: swiftSettings),
        .testTarget(name: "CMSnapTests", dependencies: ["CMSnap", "CMTypes", "CMConfig", .product(name: "GRDB", package: "GRDB.swift")], swiftSettings: swiftSettings),
        .testTarget(name: "CMTypesTests", dependencies: ["CMTypes"], swiftSettings: swiftSettings),
        .testTarget(name: "CMWireTests", dependencies: ["CMWire", "CMTypes", .product(name: "NIOPosix", package: "swift-nio"), .product(name: "Logging", package: "swift-log")], swiftSettings: swiftSettings),
        .testTarget(name: "CMConfigTests", dependencies: ["CMConfig"], swiftSettings: swiftSettings),
        .testTarget(name: "CMDaemonTests", dependencies: ["CMDaemon"], swiftSettings: swiftSettings),
        .testTarget(name: "CmctlTests", dependencies: ["cmctl", .product(name: "ArgumentParser", package: "swift-argument-parser")],
                    swiftSettings: swiftSettings),
        .testTarget(name: "CMStoreTests", dependencies: ["CMStore", .product(name: "GRDB", package: "GRDB.swift")], swiftSettings: swiftSettings),
        .testTarget(name: "CMLBTests", dependencies: ["CMLB", "CMConfig", "CMTypes", "CLinux", "CMWire"], swiftSettings: swiftSettings),
        .testTarget(name: "CMPXETests", dependencies: [
            "CMPXE", "CMImage", "CMConfig", "CMWire", "CMTypes", "PXEProtocols",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ], swiftSettings: swiftSettings),
        .testTarget(name: "PXEProtocolsTests", dependencies: ["PXEProtocols", "CMTypes"], exclude: ["Fixtures"], swiftSettings: swiftSettings),
        .testTarget(name: "VRRPTests", dependencies: ["VRRP", "CMTypes"], swiftSettings: swiftSettings),
        .testTarget(name: "CMVIPTests", dependencies: ["CMVIP", "VRRP", "CMConfig", "CMTypes"], swiftSettings: swiftSettings),
        .testTarget(name: "CMHealthTests", dependencies: ["CMHealth", "CMConfig", "CMStore", "CMWire", "CMTypes"], exclude: ["Fixtures"], swiftSettings: swiftSettings),
    ]
)
