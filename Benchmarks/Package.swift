// swift-tools-version: 6.1
// The hot paths, measured with package-benchmark in a package of their own (as swift-nio does),
// so the main package builds and tests without it. Run: cd Benchmarks && swift package benchmark
import PackageDescription

let package = Package(
    name: "PeachBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "PeachFS", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "PeachHotPaths",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "PeachProtocol", package: "PeachFS"),
                .product(name: "PeachClient", package: "PeachFS"),
                .product(name: "PeachServer", package: "PeachFS"),
                .product(name: "PeachTesting", package: "PeachFS"),
            ],
            path: "Benchmarks/PeachHotPaths",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
