import Foundation
import PeachLocalCluster
import PeachSupport

/// `peach bench io`: the mount's data path against local disk, as ratios taken in one run:
/// re-read of a cached 64 MiB file, cold whole-file fetch over loopback, and open-read-close of
/// a cached 4 KiB file. Medians of repeated runs.
public struct IOSuite: Sendable {
    public struct Row: Codable, Sendable {
        public var measurement: String
        public var local: Double
        public var afsMount: Double
        public var unit: String
        /// afsMount relative to local, as the target states it.
        public var ratio: Double
        public var target: String
        public var met: Bool
    }

    public let largeSize: Int
    public let repetitions: Int

    public init(largeSize: Int = 64 << 20, repetitions: Int = 5) {
        self.largeSize = largeSize
        self.repetitions = repetitions
    }

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
    }

    static func time(_ body: () throws -> Void) rethrows -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        try body()
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }

    public func run(progress: Progress = Progress()) throws -> [Row] {
        let local = try TemporaryDirectory(prefix: "peach-io-local")
        defer { local.remove() }
        let localFS = MountedFileSystem(root: local.path, isPeachMount: false)
        let data = content(largeSize, seed: 9)
        let small = content(4096, seed: 10)
        try localFS.writeFile("/large", data, truncate: true)
        try localFS.writeFile("/small", small, truncate: true)
        let megabytes = Double(largeSize) / 1e6
        return try BenchCluster.with(mounted: true) { cluster in
            try cluster.writer.writeFile("/large", data, truncate: true)
            try cluster.writer.writeFile("/small", small, truncate: true)
            guard let afs = try cluster.client(.afs) as? MountedFileSystem else { throw BenchError("not a mount") }
            progress.show("io: cold fetch")
            var cold: [Double] = []
            for _ in 0..<repetitions {
                try Self.dropCachedCopy(afs.root + "/large")
                cold.append(try Self.time { try afs.readFile("/large") })
            }
            progress.show("io: re-read")
            var warmLocal: [Double] = [], warmMount: [Double] = []
            for _ in 0..<repetitions {
                warmLocal.append(try Self.time { try localFS.readFile("/large") })
                warmMount.append(try Self.time { try afs.readFile("/large") })
            }
            progress.show("io: open-read-close 4 KiB")
            _ = try afs.readFile("/small")
            var smallLocal: [Double] = [], smallMount: [Double] = []
            for _ in 0..<repetitions {
                smallLocal.append(try Self.time { for _ in 0..<200 { try localFS.readFile("/small") } } / 200)
                smallMount.append(try Self.time { for _ in 0..<200 { try afs.readFile("/small") } } / 200)
            }
            progress.done()
            let coldMBps = megabytes / Self.median(cold)
            let warmLocalMBps = megabytes / Self.median(warmLocal), warmMountMBps = megabytes / Self.median(warmMount)
            let smallLocalUs = Self.median(smallLocal) * 1e6, smallMountUs = Self.median(smallMount) * 1e6
            return [
                Row(measurement: "re-read of a cached \(formatBytes(UInt64(largeSize))) file", local: warmLocalMBps, afsMount: warmMountMBps,
                    unit: "MB/s", ratio: warmMountMBps / warmLocalMBps, target: "≥ 0.8 of local", met: warmMountMBps / warmLocalMBps >= 0.8),
                Row(measurement: "cold whole-file fetch over loopback", local: 0, afsMount: coldMBps, unit: "MB/s",
                    ratio: coldMBps / 300, target: "≥ 300 MB/s", met: coldMBps >= 300),
                Row(measurement: "open-read-close of a cached 4 KiB file", local: smallLocalUs, afsMount: smallMountUs, unit: "µs",
                    ratio: smallMountUs / smallLocalUs, target: "≤ 4× local", met: smallMountUs / smallLocalUs <= 4),
            ]
        }
    }

    /// `peach fs flush` on a mounted file: its cached copy and the kernel's pages go.
    static func dropCachedCopy(_ path: String) throws {
        let result = try shell("'\(MountSupport.peachBinary)' fs flush '\(path)'")
        guard result.status == 0 else { throw BenchError("fs flush failed: \(result.output)") }
    }
}

public struct IOReport: BenchReport {
    public var rows: [IOSuite.Row]

    public init(rows: [IOSuite.Row]) { self.rows = rows }

    public func table() -> String {
        var table = TextTable(["measurement", "local disk", "AFS-mode mount", "ratio", "target", "met"])
        for r in rows {
            let local = r.local == 0 ? "—" : String(format: "%.1f %@", r.local, r.unit)
            table.add([r.measurement, local, String(format: "%.1f %@", r.afsMount, r.unit), String(format: "%.2f", r.ratio), r.target,
                       r.met ? "yes" : "no"])
        }
        return table.render()
    }

    public func json() throws -> Data { try benchJSON(suite: "io", rows: rows) }

    public func writeReport(to directory: String, date: String, command: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try json().write(to: URL(fileURLWithPath: directory + "/io.json"))
        try "# PeachFS: the mount's data path\n\nMeasured \(date) with `\(command)`.\n\n```\n\(table())```\n"
            .write(toFile: directory + "/report.md", atomically: true, encoding: .utf8)
    }
}
