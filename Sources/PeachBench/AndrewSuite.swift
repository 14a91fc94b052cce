import Foundation
import PeachProtocol
import PeachSupport

/// `peach bench andrew`: the five phases through real mounts of both designs and in a local
/// directory, cold (fresh client caches) and warm (the same client again, into a new target).
public struct AndrewSuite: Sendable {
    public struct Row: Codable, Sendable {
        public var target: String
        public var run: String
        public var phase: String
        public var seconds: Double
        public var serverRequests: Int
    }

    public let workload: AndrewWorkload
    public let compiles: Bool
    /// `--metrics`: the servers and mounts of the run, shown to Prometheus.
    public let metrics: BenchMetricsHooks?

    public init(tree: SourceTree, metrics: BenchMetricsHooks? = nil) {
        workload = AndrewWorkload(tree: tree)
        compiles = tree.hasAndrewMakefile
        self.metrics = metrics
    }

    public func run(progress: Progress = Progress()) throws -> [Row] {
        var rows: [Row] = []
        // The local baseline: the same phases on this machine's disk.
        let local = try TemporaryDirectory(prefix: "peach-andrew-local")
        defer { local.remove() }
        let localFS = MountedFileSystem(root: local.path, isPeachMount: false)
        try workload.writeSource(to: localFS, root: "/src")
        for (run, target) in [("cold", "/t1"), ("warm", "/t2")] {
            progress.show("andrew: local, \(run)")
            rows += try phases(on: localFS, target: "local", run: run, into: target)
        }
        for design in ClientDesign.allCases {
            try BenchCluster.with(mounted: true, metrics: metrics) { cluster in
                try workload.writeSource(to: cluster.writer, root: "/src")
                guard let fs = try cluster.client(design) as? MountedFileSystem else { throw BenchError("not a mount") }
                for (run, target) in [("cold", "/t1"), ("warm", "/t2")] {
                    progress.show("andrew: \(design) mount, \(run)")
                    rows += try phases(on: fs, target: design.rawValue, run: run, into: target)
                }
            }
        }
        progress.done()
        return rows
    }

    private func phases(on fs: MountedFileSystem, target label: String, run: String, into target: String) throws -> [Row] {
        var rows: [Row] = []
        for phase in AndrewWorkload.Phase.allCases {
            if phase == .make && !compiles { continue }
            let m = try measure(fs, applicationBytesRead: nil) {
                try workload.run(phase, on: fs, source: "/src", target: target) { directory in
                    try AndrewWorkload.compileWithMake(in: fs.root + directory)
                }
            }
            rows.append(Row(target: label, run: run, phase: phase.rawValue, seconds: m.seconds, serverRequests: m.serverRequests))
        }
        return rows
    }
}

/// The Andrew suite's table, JSON and report.
public struct AndrewReport: BenchReport {
    public var rows: [AndrewSuite.Row]
    public var tree: SourceTree

    public init(rows: [AndrewSuite.Row], tree: SourceTree) {
        self.rows = rows
        self.tree = tree
    }

    func row(_ target: String, _ run: String, _ phase: String) -> AndrewSuite.Row? {
        rows.first { $0.target == target && $0.run == run && $0.phase == phase }
    }

    var phases: [String] { AndrewWorkload.Phase.allCases.map(\.rawValue).filter { p in rows.contains { $0.phase == p } } }

    public func table() -> String {
        var out = ""
        for run in ["cold", "warm"] {
            var table = TextTable(["\(run) phase", "local", "afs", "afs requests", "nfs", "nfs requests", "afs/local", "nfs/local"])
            for phase in phases + ["total"] {
                func seconds(_ target: String) -> Double {
                    phase == "total" ? rows.filter { $0.target == target && $0.run == run }.reduce(0) { $0 + $1.seconds }
                        : row(target, run, phase)?.seconds ?? 0
                }
                func requests(_ target: String) -> Int {
                    phase == "total" ? rows.filter { $0.target == target && $0.run == run }.reduce(0) { $0 + $1.serverRequests }
                        : row(target, run, phase)?.serverRequests ?? 0
                }
                let local = seconds("local")
                table.add([phase, formatSeconds(local), formatSeconds(seconds("afs")), "\(requests("afs"))",
                           formatSeconds(seconds("nfs")), "\(requests("nfs"))",
                           String(format: "%.1f", seconds("afs") / max(local, 1e-9)),
                           String(format: "%.1f", seconds("nfs") / max(local, 1e-9))])
            }
            out += table.render() + "\n"
        }
        return out + "tree: \(tree.files.count) files, \(formatBytes(UInt64(tree.totalBytes))) in \(tree.directories.count) directories\n"
    }

    public func json() throws -> Data {
        struct Document: Encodable {
            var suite = "andrew"
            var files: Int
            var bytes: Int
            var rows: [AndrewSuite.Row]
        }
        return try benchJSON(Document(files: tree.files.count, bytes: tree.totalBytes, rows: rows))
    }

    public func writeReport(to directory: String, date: String, command: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for run in ["cold", "warm"] {
            let chart = SVGChart.bars(title: "Andrew benchmark, \(run): seconds per phase", yLabel: "seconds", categories: phases, series: [
                .init(name: "local disk", color: SVGChart.localColor, values: phases.map { row("local", run, $0)?.seconds ?? 0 }),
                .init(name: "AFS mode", color: SVGChart.afsColor, values: phases.map { row("afs", run, $0)?.seconds ?? 0 }),
                .init(name: "NFS mode", color: SVGChart.nfsColor, values: phases.map { row("nfs", run, $0)?.seconds ?? 0 }),
            ])
            try chart.write(toFile: directory + "/andrew-\(run).svg", atomically: true, encoding: .utf8)
        }
        try json().write(to: URL(fileURLWithPath: directory + "/andrew.json"))
        let md = """
            # PeachFS: the Andrew benchmark

            Measured \(date) with `\(command)`: \(tree.files.count) files, \(formatBytes(UInt64(tree.totalBytes))), through real
            FUSE mounts of each design and in a local directory. Cold: fresh client caches (the source
            tree was written by another client). Warm: the same client again, into a new target.

            ![cold](andrew-cold.svg)

            ![warm](andrew-warm.svg)

            ```
            \(table())```

            """
        try md.write(toFile: directory + "/report.md", atomically: true, encoding: .utf8)
    }
}
