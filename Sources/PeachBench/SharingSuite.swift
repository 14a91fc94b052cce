import Foundation
import PeachClient
import PeachLocalCluster
import PeachProtocol
import PeachSupport

/// `peach bench sharing`: K readers and one writer on a shared set of files. A read is stale
/// when the content it got right after its open is older than the last write whose close had
/// returned before that open.
public struct SharingSuite: Sendable {
    public struct Row: Codable, Sendable {
        public var design: String
        public var readers: Int
        public var reads: Int
        public var staleReads: Int
        /// Reads whose content was no whole closed version (a write in progress, a truncated file).
        public var tornReads: Int
        public var writes: Int
        public var bytesMoved: UInt64
        public var serverRequests: Int
        public var seconds: Double
    }

    public let readers: Int
    public let files: Int
    public let rounds: Int
    public let fileSize: Int

    public init(readers: Int = 4, files: Int = 8, rounds: Int = 20, fileSize: Int = 16 << 10) {
        self.readers = readers
        self.files = files
        self.rounds = rounds
        self.fileSize = fileSize
    }

    /// The designs compared: AFS mode, NFS mode (close-to-open), NFS mode with nocto.
    static let variants: [(name: String, design: ClientDesign, cto: Bool)] = [("afs", .afs, true), ("nfs", .nfs, true), ("nfs-nocto", .nfs, false)]

    public func run(progress: Progress = Progress()) throws -> [Row] {
        try Self.variants.map { variant in
            progress.show("sharing: \(variant.name)")
            defer { progress.done() }
            return try run(variant.name, design: variant.design, cto: variant.cto)
        }
    }

    func payload(version: Int) -> [UInt8] {
        var bytes = Array(String(format: "%08d", version).utf8)
        bytes += [UInt8](repeating: UInt8(version % 251), count: max(0, fileSize - bytes.count))
        return bytes
    }

    private func run(_ name: String, design: ClientDesign, cto: Bool) throws -> Row {
        try withCluster { cluster in
            func newClient() throws -> CacheManager {
                if design == .afs { return try cluster.addClient() }
                var options = NFSOptions()
                options.cto = cto
                return try cluster.addNFSClient(options)
            }
            let writer = InProcessFileSystem(try newClient())
            let readerClients = try (0..<readers).map { _ in InProcessFileSystem(try newClient()) }
            for f in 0..<files { try writer.writeFile("/shared\(f)", payload(version: 0), truncate: true) }
            let all = [writer] + readerClients
            let before = try all.map { try $0.statistics() }
            let state = SharingState(files: files)
            let start = DispatchTime.now().uptimeNanoseconds
            let rounds = self.rounds, files = self.files
            try concurrently(readers + 1) { i in
                if i == 0 {
                    for round in 1...rounds {
                        for f in 0..<files {
                            try writer.writeFile("/shared\(f)", self.payload(version: round), truncate: true)
                            state.closed(file: f, version: round)
                        }
                    }
                    state.finish()
                } else {
                    let fs = readerClients[i - 1]
                    var f = i % files
                    while !state.isFinished {
                        let expected = state.lastClosed(f)
                        let bytes = try fs.readBytes("/shared\(f)")
                        let version = Int(String(decoding: bytes.prefix(8), as: UTF8.self)) ?? -1
                        if version < 0 || bytes != self.payload(version: version) {
                            state.read(torn: true)
                        } else {
                            state.read(stale: version < expected)
                        }
                        f = (f + 1) % files
                    }
                }
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            let deltas = try zip(all, before).map { try $0.statistics().since($1) }
            return Row(design: name, readers: readers, reads: state.reads, staleReads: state.staleReads, tornReads: state.tornReads,
                       writes: rounds * files,
                       bytesMoved: deltas.reduce(0) { $0 + $1.fetchedBytes + $1.storedBytes },
                       serverRequests: deltas.reduce(0) { $0 + $1.serverRequests }, seconds: seconds)
        }
    }
}

final class SharingState: @unchecked Sendable {
    private let lock = NSLock()
    private var versions: [Int]
    private var finished = false
    private(set) var reads = 0
    private(set) var staleReads = 0
    private(set) var tornReads = 0

    init(files: Int) { versions = Array(repeating: 0, count: files) }

    func closed(file: Int, version: Int) { lock.lock(); versions[file] = version; lock.unlock() }
    func lastClosed(_ file: Int) -> Int { lock.lock(); defer { lock.unlock() }; return versions[file] }
    func finish() { lock.lock(); finished = true; lock.unlock() }
    var isFinished: Bool { lock.lock(); defer { lock.unlock() }; return finished }

    func read(stale: Bool = false, torn: Bool = false) {
        lock.lock()
        reads += 1
        if stale { staleReads += 1 }
        if torn { tornReads += 1 }
        lock.unlock()
    }
}

public struct SharingReport: BenchReport {
    public var rows: [SharingSuite.Row]

    public init(rows: [SharingSuite.Row]) { self.rows = rows }

    public func table() -> String {
        var table = TextTable(["design", "readers", "reads", "stale reads", "stale %", "torn reads", "writes", "bytes moved", "requests", "time"])
        for r in rows {
            table.add([r.design, "\(r.readers)", "\(r.reads)", "\(r.staleReads)",
                       String(format: "%.1f", 100 * Double(r.staleReads) / Double(max(1, r.reads))), "\(r.tornReads)", "\(r.writes)",
                       formatBytes(r.bytesMoved), "\(r.serverRequests)", formatSeconds(r.seconds)])
        }
        return table.render()
    }

    public func json() throws -> Data { try benchJSON(suite: "sharing", rows: rows) }

    public func writeReport(to directory: String, date: String, command: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let names = rows.map(\.design)
        try SVGChart.bars(title: "Stale reads (content older than the last closed write)", yLabel: "stale reads", categories: names,
                          series: [.init(name: "stale reads", color: SVGChart.nfsColor, values: rows.map { Double($0.staleReads) })])
            .write(toFile: directory + "/sharing-stale.svg", atomically: true, encoding: .utf8)
        try SVGChart.bars(title: "Server requests", yLabel: "requests", categories: names,
                          series: [.init(name: "requests", color: SVGChart.afsColor, values: rows.map { Double($0.serverRequests) })])
            .write(toFile: directory + "/sharing-requests.svg", atomically: true, encoding: .utf8)
        try json().write(to: URL(fileURLWithPath: directory + "/sharing.json"))
        let md = """
            # PeachFS: sharing

            Measured \(date) with `\(command)`: one writer rewrites a set of shared files round after
            round while readers open and read them; a read is stale when its content is older than the
            last write whose close had returned before the read's open, and torn when it is no whole
            version at all (a write in progress, or a file truncated by an O_TRUNC open).

            ![stale](sharing-stale.svg)

            ![requests](sharing-requests.svg)

            ```
            \(table())```

            """
        try md.write(toFile: directory + "/report.md", atomically: true, encoding: .utf8)
    }
}
