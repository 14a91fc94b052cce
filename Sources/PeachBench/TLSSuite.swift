import Foundation
import PeachLocalCluster
import PeachSupport

/// `peach bench tls`: what mutual TLS costs, side by side in one run. The same workloads through
/// AFS-mode mounts of a plain-TCP server and of a TLS-only server: cold whole-file fetches
/// (taken in turns, plain then TLS, so drift hits both) and the Andrew benchmark's phases.
public struct TLSSuite: Sendable {
    public struct Row: Codable, Sendable {
        public var measurement: String
        public var plain: Double
        public var tls: Double
        public var unit: String
        /// TLS relative to plain: throughput ratio for MB/s, time ratio for seconds.
        public var ratio: Double
    }

    public let largeSize: Int
    public let repetitions: Int
    public let workload: AndrewWorkload
    let phases: [AndrewWorkload.Phase]

    public init(largeSize: Int = 64 << 20, repetitions: Int = 7, tree: SourceTree) {
        self.largeSize = largeSize
        self.repetitions = repetitions
        workload = AndrewWorkload(tree: tree)
        phases = AndrewWorkload.Phase.allCases.filter { $0 != .make || tree.hasAndrewMakefile }
    }

    public func run(progress: Progress = Progress()) throws -> [Row] {
        let cell = try CertificateCell(clients: ["alpha", "beta"])
        let data = content(largeSize, seed: 21)
        let megabytes = Double(largeSize) / 1e6
        return try BenchCluster.with(mounted: true) { plain in
            try BenchCluster.with(mounted: true, cell: cell) { secure in
                let clusters = [plain, secure]
                var readers: [MountedFileSystem] = []
                for cluster in clusters {
                    try cluster.writer.writeFile("/large", data, truncate: true)
                    try workload.writeSource(to: cluster.writer, root: "/src")
                    guard let reader = try cluster.client(.afs) as? MountedFileSystem else { throw BenchError("not a mount") }
                    readers.append(reader)
                }
                var cold: [[Double]] = [[], []]
                for round in 0..<repetitions {
                    progress.show("tls: cold fetch \(round + 1)/\(repetitions)")
                    for (i, reader) in readers.enumerated() {
                        try IOSuite.dropCachedCopy(reader.root + "/large")
                        cold[i].append(try IOSuite.time { try reader.readFile("/large") })
                    }
                }
                var andrew: [[Double]] = [[], []]
                for (i, reader) in readers.enumerated() {
                    progress.show("tls: andrew \(i == 0 ? "plain" : "TLS")")
                    for phase in phases {
                        andrew[i].append(try IOSuite.time {
                            try workload.run(phase, on: reader, source: "/src", target: "/t") { directory in
                                try AndrewWorkload.compileWithMake(in: reader.root + directory)
                            }
                        })
                    }
                }
                progress.done()
                let plainMBps = megabytes / IOSuite.median(cold[0]), tlsMBps = megabytes / IOSuite.median(cold[1])
                var rows = [Row(measurement: "cold whole-file fetch, \(formatBytes(UInt64(largeSize)))", plain: plainMBps, tls: tlsMBps,
                                unit: "MB/s", ratio: tlsMBps / plainMBps)]
                for (index, phase) in phases.enumerated() {
                    rows.append(Row(measurement: "andrew \(phase.rawValue)", plain: andrew[0][index], tls: andrew[1][index],
                                    unit: "s", ratio: andrew[1][index] / max(andrew[0][index], 1e-9)))
                }
                let total = (andrew[0].reduce(0, +), andrew[1].reduce(0, +))
                rows.append(Row(measurement: "andrew total", plain: total.0, tls: total.1, unit: "s", ratio: total.1 / total.0))
                return rows
            }
        }
    }
}

public struct TLSReport: BenchReport {
    public var rows: [TLSSuite.Row]

    public init(rows: [TLSSuite.Row]) { self.rows = rows }

    public func table() -> String {
        var table = TextTable(["measurement", "plain TCP", "mutual TLS", "unit", "TLS/plain"])
        for row in rows {
            let format = row.unit == "s" ? formatSeconds : { String(format: "%.0f", $0) }
            table.add([row.measurement, format(row.plain), format(row.tls), row.unit, String(format: "%.2f", row.ratio)])
        }
        return table.render()
    }

    public func json() throws -> Data { try benchJSON(suite: "tls", rows: rows) }

    public func writeReport(to directory: String, date: String, command: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try json().write(to: URL(fileURLWithPath: directory + "/tls.json"))
        let md = "# PeachFS: the cost of mutual TLS\n\nMeasured \(date) with `\(command)`.\n\n```\n\(table())```\n"
        try md.write(toFile: directory + "/report.md", atomically: true, encoding: .utf8)
    }
}
