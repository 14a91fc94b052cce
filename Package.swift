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
        .library(name: "PeachTesting", targets: ["PeachTesting"]),
        .library(name: "PeachBench", targets: ["PeachBench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        .systemLibrary(
            name: "CFuse3",
            pkgConfig: "fuse3",
            providers: [.apt(["libfuse3-dev"])]
        ),
        .systemLibrary(name: "CPeachSystem"),
        .target(
            name: "PeachProtocol",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")]
        ),
        .target(
            name: "PeachServer",
            dependencies: [
                "PeachProtocol", "CPeachSystem",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "PeachClient",
            dependencies: [
                "PeachProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "PeachFUSE",
            dependencies: ["PeachClient", "CFuse3", "CPeachSystem", .product(name: "Logging", package: "swift-log")]
        ),
        .target(
            name: "PeachTesting",
            dependencies: ["PeachServer", "PeachClient", "CPeachSystem", .product(name: "NIOCore", package: "swift-nio")]
        ),
        .target(
            name: "PeachBench",
            dependencies: ["PeachServer", "PeachClient", "PeachTesting", "CPeachSystem"]
        ),
        .executableTarget(
            name: "peach",
            dependencies: [
                "PeachServer", "PeachClient", "PeachFUSE", "PeachBench", "CPeachSystem",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "PeachProtocolTests", dependencies: ["PeachProtocol"]),
        .testTarget(name: "PeachServerTests", dependencies: ["PeachServer", "PeachTesting"]),
        .testTarget(name: "PeachClientTests", dependencies: ["PeachClient", "PeachTesting"]),
        .testTarget(name: "PeachFUSETests", dependencies: ["PeachTesting"]),
        .testTarget(name: "PeachBenchTests", dependencies: ["PeachBench", "PeachTesting"]),
    ],
    swiftLanguageModes: [.v6]
)
