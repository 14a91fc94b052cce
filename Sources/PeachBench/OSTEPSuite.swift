import Foundation
import PeachProtocol
import PeachClient

/// The eleven workloads of OSTEP's AFS-versus-NFS comparison ("The Andrew File System",
/// Figure "Comparison: AFS vs. NFS"), each against a fresh server with one client of each design.
public struct OSTEPSuite: Sendable {
    public struct Sizes: Sendable, Codable {
        /// Small files: how many, and the size of each.
        public var smallFiles: Int
        public var small: Int
        public var medium: Int
        public var large: Int
        /// The NFS client's memory cache: small and medium files fit, the large file does not
        /// (it fits in the AFS disk cache).
        public var nfsCacheSize: Int
        public var blockSize: Int

        public init(smallFiles: Int, small: Int, medium: Int, large: Int, nfsCacheSize: Int, blockSize: Int) {
            self.smallFiles = smallFiles
            self.small = small
            self.medium = medium
            self.large = large
            self.nfsCacheSize = nfsCacheSize
            self.blockSize = blockSize
        }

        public static let full = Sizes(smallFiles: 20, small: 16 << 10, medium: 4 << 20, large: 64 << 20,
                                       nfsCacheSize: 32 << 20, blockSize: 64 << 10)
        public static let quick = Sizes(smallFiles: 10, small: 16 << 10, medium: 1 << 20, large: 16 << 20,
                                        nfsCacheSize: 8 << 20, blockSize: 64 << 10)
        /// Blocks in the large file (the chapter's NL).
        public var largeBlocks: Int { large / blockSize }
    }

    public struct Workload: Sendable {
        public var number: Int
        public var name: String
        /// The chapter's costs, as it writes them.
        public var nfsCost: String
        public var afsCost: String
        /// The chapter's AFS/NFS cost ratio, as text and (in bytes over the network) as a number.
        public var predictedRatio: String
        public var predictedBytesRatio: Double?
        public var isRead: Bool
    }

    public struct Row: Codable, Sendable {
        public var workload: Int
        public var name: String
        public var design: String
        public var serverRequests: Int
        public var fetchedBytes: UInt64
        public var storedBytes: UInt64
        public var hitRate: Double?
        public var seconds: Double
        public var predictedRatio: String
        public var rpcs: [String: Int]
    }

    public let sizes: Sizes
    public let mounted: Bool

    public init(sizes: Sizes, mounted: Bool) {
        self.sizes = sizes
        self.mounted = mounted
    }

    public var workloads: [Workload] {
        let nl = Double(sizes.largeBlocks)
        return [
            Workload(number: 1, name: "small file, sequential read", nfsCost: "Ns·Lnet", afsCost: "Ns·Lnet", predictedRatio: "1", predictedBytesRatio: 1, isRead: true),
            Workload(number: 2, name: "small file, sequential re-read", nfsCost: "Ns·Lmem", afsCost: "Ns·Lmem", predictedRatio: "1", predictedBytesRatio: nil, isRead: true),
            Workload(number: 3, name: "medium file, sequential read", nfsCost: "Nm·Lnet", afsCost: "Nm·Lnet", predictedRatio: "1", predictedBytesRatio: 1, isRead: true),
            Workload(number: 4, name: "medium file, sequential re-read", nfsCost: "Nm·Lmem", afsCost: "Nm·Lmem", predictedRatio: "1", predictedBytesRatio: nil, isRead: true),
            Workload(number: 5, name: "large file, sequential read", nfsCost: "NL·Lnet", afsCost: "NL·Lnet", predictedRatio: "1", predictedBytesRatio: 1, isRead: true),
            Workload(number: 6, name: "large file, sequential re-read", nfsCost: "NL·Lnet", afsCost: "NL·Ldisk", predictedRatio: "Ldisk/Lnet", predictedBytesRatio: 0, isRead: true),
            Workload(number: 7, name: "large file, single read", nfsCost: "Lnet", afsCost: "NL·Lnet", predictedRatio: "NL", predictedBytesRatio: nl, isRead: true),
            Workload(number: 8, name: "small file, sequential write", nfsCost: "Ns·Lnet", afsCost: "Ns·Lnet", predictedRatio: "1", predictedBytesRatio: 1, isRead: false),
            Workload(number: 9, name: "large file, sequential write", nfsCost: "NL·Lnet", afsCost: "NL·Lnet", predictedRatio: "1", predictedBytesRatio: 1, isRead: false),
            Workload(number: 10, name: "large file, sequential overwrite", nfsCost: "NL·Lnet", afsCost: "2·NL·Lnet", predictedRatio: "2", predictedBytesRatio: 2, isRead: false),
            Workload(number: 11, name: "large file, single write", nfsCost: "Lnet", afsCost: "2·NL·Lnet", predictedRatio: "2·NL", predictedBytesRatio: 2 * nl, isRead: false),
        ]
    }

    public func run(only: Set<Int>? = nil, progress: Progress = Progress()) throws -> [Row] {
        var rows: [Row] = []
        let chosen = workloads.filter { only?.contains($0.number) ?? true }
        for (position, workload) in chosen.enumerated() {
            progress.show("ostep: \(position + 1) of \(chosen.count), workload \(workload.number) (\(workload.name))")
            try BenchCluster.with(mounted: mounted, nfsCacheSize: sizes.nfsCacheSize, blockSize: sizes.blockSize) { cluster in
                try prepare(workload, using: cluster.writer)
                for design in ClientDesign.allCases {
                    let fileSystem = try cluster.client(design)
                    let m = try run(workload, on: fileSystem, design: design, cluster: cluster)
                    rows.append(Row(workload: workload.number, name: workload.name, design: design.rawValue,
                                    serverRequests: m.serverRequests, fetchedBytes: m.fetchedBytes, storedBytes: m.storedBytes,
                                    hitRate: m.hitRate, seconds: m.seconds, predictedRatio: workload.predictedRatio, rpcs: m.rpcs))
                }
            }
        }
        progress.done()
        return rows
    }

    var smallPaths: [String] { (0..<sizes.smallFiles).map { "/small\($0)" } }

    /// Files the workload reads or overwrites, written by another client so that neither
    /// measured client has them cached.
    private func prepare(_ workload: Workload, using writer: BenchFileSystem) throws {
        switch workload.number {
        case 1, 2:
            for (i, path) in smallPaths.enumerated() { try writer.writeFile(path, content(sizes.small, seed: UInt8(i)), truncate: true) }
        case 3, 4:
            try writer.writeFile("/medium", content(sizes.medium, seed: 1), truncate: true)
        case 5, 6, 7, 10, 11:
            try writer.writeFile("/large", content(sizes.large, seed: 2), truncate: true)
        default:
            break
        }
    }

    private func run(_ w: Workload, on fs: BenchFileSystem, design: ClientDesign, cluster: BenchCluster) throws -> Measurement {
        let smallTotal = UInt64(sizes.small * sizes.smallFiles)
        switch w.number {
        case 1:
            return try measure(fs, applicationBytesRead: smallTotal) { for p in smallPaths { try fs.readFile(p) } }
        case 2:
            for p in smallPaths { try fs.readFile(p) }
            return try measure(fs, applicationBytesRead: smallTotal) { for p in smallPaths { try fs.readFile(p) } }
        case 3:
            return try measure(fs, applicationBytesRead: UInt64(sizes.medium)) { try fs.readFile("/medium") }
        case 4:
            try fs.readFile("/medium")
            return try measure(fs, applicationBytesRead: UInt64(sizes.medium)) { try fs.readFile("/medium") }
        case 5:
            return try measure(fs, applicationBytesRead: UInt64(sizes.large)) { try fs.readFile("/large") }
        case 6:
            try fs.readFile("/large")
            // The large file does not fit in client memory: through a mount, drop the kernel's
            // pages of it (the in-process NFS client's block cache is already too small).
            cluster.dropKernelPages("/large", design: design)
            return try measure(fs, applicationBytesRead: UInt64(sizes.large)) { try fs.readFile("/large") }
        case 7:
            return try measure(fs, applicationBytesRead: 4096) { try fs.readRange("/large", offset: UInt64(sizes.large / 2), count: 4096) }
        case 8:
            let data = content(sizes.small, seed: 3)
            return try measure(fs, applicationBytesRead: nil) {
                for p in smallPaths { try fs.writeFile("/\(design)-" + p.dropFirst(), data, truncate: true) }
            }
        case 9:
            let data = content(sizes.large, seed: 4)
            return try measure(fs, applicationBytesRead: nil) { try fs.writeFile("/\(design)-large", data, truncate: true) }
        case 10:
            let data = content(sizes.large, seed: 5)
            return try measure(fs, applicationBytesRead: nil) { try fs.writeFile("/large", data, truncate: true) }
        case 11:
            let data = content(4096, seed: 6)
            return try measure(fs, applicationBytesRead: nil) { try fs.writeRange("/large", offset: UInt64(sizes.large / 2), data) }
        default:
            fatalError("no workload \(w.number)")
        }
    }
}
