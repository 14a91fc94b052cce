// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "PeachFS",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "peach", targets: ["peach"]),
        .library(name: "PeachProtocol", targets: ["PeachProtocol"]),
        .library(name: "PeachClient", targets: ["PeachClient"]),
        .library(name: "PeachServer", targets: ["PeachServer"]),
        .library(name: "PeachSupport", targets: ["PeachSupport"]),
        .library(name: "PeachLocalCluster", targets: ["PeachLocalCluster"]),
        .library(name: "PeachTesting", targets: ["PeachTesting"]),
        .library(name: "PeachBench", targets: ["PeachBench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/JohnSundell/Ink", from: "0.6.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CFuse3",
            pkgConfig: "fuse3",
            providers: [.apt(["libfuse3-dev"])]
        ),
        .systemLibrary(name: "CPeachSystem"),
        // What the server, the clients and the CLI share that is not the protocol: server
        // addresses, the directory lock, whole writes, text tables, child processes.
        .target(
            name: "PeachSupport",
            dependencies: ["CPeachSystem", .product(name: "NIOCore", package: "swift-nio")]
        ),
        .target(
            name: "PeachProtocol",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")]
        ),
        .target(
            name: "PeachSecurity",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ]
        ),
        .target(
            name: "PeachServer",
            dependencies: [
                "PeachProtocol", "PeachSupport", "CPeachSystem", "PeachSecurity",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "GRDB", package: "GRDB.swift"),
                // SQLite's C API, for the one statement stepped by hand (`VnodeTable.status`).
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        .target(
            name: "PeachClient",
            dependencies: [
                "PeachProtocol", "PeachSupport", "PeachSecurity",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        // `--metrics HOST:PORT`: the Prometheus registry and its HTTP endpoint.
        .target(
            name: "PeachMetrics",
            dependencies: [
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .target(
            name: "PeachFUSE",
            dependencies: ["PeachClient", "PeachProtocol", "CFuse3", "CPeachSystem", .product(name: "NIOConcurrencyHelpers", package: "swift-nio"), .product(name: "Logging", package: "swift-log")]
        ),
        // Servers and mounts on this machine, in processes of their own or in-process: what
        // `peach bench` runs, and what the tests run.
        .target(
            name: "PeachLocalCluster",
            dependencies: ["PeachSupport", "PeachServer", "PeachClient", "PeachSecurity", "PeachProtocol", "CPeachSystem"]
        ),
        // For tests only: a fault-injecting proxy, a raw protocol client, polling.
        .target(
            name: "PeachTesting",
            dependencies: ["PeachLocalCluster", "PeachSupport", "PeachProtocol", "CPeachSystem",
                           .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "NIOConcurrencyHelpers", package: "swift-nio")]
        ),
        .target(
            name: "PeachBench",
            dependencies: ["PeachServer", "PeachClient", "PeachLocalCluster", "PeachSupport", "PeachProtocol", "CPeachSystem",
                           .product(name: "Ink", package: "Ink")]
        ),
        // The per-input logic of the fuzz targets, shared with the corpus replay test.
        .target(
            name: "PeachFuzzing",
            dependencies: ["PeachProtocol", "PeachServer", .product(name: "NIOCore", package: "swift-nio")]
        ),
        // libFuzzer targets when built by scripts/fuzz.sh (-sanitize=fuzzer,address -DFUZZING);
        // corpus replayers (file arguments) in a plain build.
        .executableTarget(name: "peach-fuzz-frames", dependencies: ["PeachFuzzing"], path: "Fuzz/FrameFuzzer"),
        .executableTarget(name: "peach-fuzz-requests", dependencies: ["PeachFuzzing"], path: "Fuzz/RequestFuzzer"),
        .executableTarget(
            name: "peach",
            dependencies: [
                "PeachServer", "PeachClient", "PeachFUSE", "PeachBench", "PeachSecurity", "PeachMetrics", "PeachSupport",
                "PeachProtocol", "PeachLocalCluster", "CPeachSystem",
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"), .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "PeachProtocolTests", dependencies: ["PeachProtocol", .product(name: "NIOCore", package: "swift-nio")]),
        .testTarget(name: "PeachServerTests", dependencies: [
            "PeachServer", "PeachClient", "PeachProtocol", "PeachSupport", "PeachLocalCluster", "PeachTesting", "PeachFuzzing",
            "PeachSecurity", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOConcurrencyHelpers", package: "swift-nio"), .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "PeachSecurityTests", dependencies: [
            "PeachSecurity", "PeachSupport", "PeachLocalCluster", "PeachTesting", .product(name: "NIOSSL", package: "swift-nio-ssl"),
        ]),
        .testTarget(name: "PeachClientTests", dependencies: [
            "PeachClient", "PeachProtocol", "PeachSupport", "PeachLocalCluster", "PeachTesting",
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
            .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOConcurrencyHelpers", package: "swift-nio"), .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
        ]),
        .testTarget(name: "PeachFUSETests", dependencies: [
            "PeachClient", "PeachProtocol", "PeachServer", "PeachSupport", "PeachLocalCluster", "PeachTesting",
            .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ]),
        .testTarget(name: "PeachBenchTests", dependencies: [
            "PeachBench", "PeachProtocol", "PeachServer", "PeachSupport", "PeachLocalCluster", "PeachTesting",
        ]),
    ],
    swiftLanguageModes: [.v6]
)
