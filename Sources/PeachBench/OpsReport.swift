import Foundation
import PeachSupport

/// `peach bench ops` as tables (latency, then CPU per operation, then workloads), JSON and a
/// report with a latency chart.
public struct OpsReport: BenchReport {
    public var results: OpsSuite.Results

    public init(results: OpsSuite.Results) { self.results = results }

    var targets: [String] {
        var seen: [String] = []
        for row in results.operations where !seen.contains(row.target) { seen.append(row.target) }
        return seen
    }

    func row(_ operation: String, _ target: String) -> OpsSuite.OperationRow? {
        results.operations.first { $0.operation == operation && $0.target == target }
    }

    public func table() -> String {
        var latency = TextTable(["operation (median µs)"] + targets)
        for operation in OpsSuite.operations {
            latency.add([operation] + targets.map { row(operation, $0).map { String(format: "%.0f", $0.medianMicroseconds) } ?? "—" })
        }
        var cpu = TextTable(["CPU per operation (µs)", "afs server", "afs cache manager", "nfs server", "nfs cache manager"])
        var switches = TextTable(["voluntary context switches per operation", "afs server", "afs cache manager", "nfs server", "nfs cache manager"])
        for operation in OpsSuite.operations {
            let cells = ["afs", "nfs"].flatMap { design -> [String] in
                let r = row(operation, design)
                return [r?.serverCPUMicroseconds, r?.cacheManagerCPUMicroseconds].map { $0.map { String(format: "%.0f", $0) } ?? "—" }
            }
            cpu.add([operation] + cells)
            switches.add([operation] + ["afs", "nfs"].flatMap { design -> [String] in
                let r = row(operation, design)
                return [r?.serverSwitches, r?.cacheManagerSwitches].map { $0.map { String(format: "%.1f", $0) } ?? "—" }
            })
        }
        let place = results.tmpfs == true ? ", server root, caches and local directory on tmpfs" : ""
        var text = "server --sync \(results.sync)\(place)\n\n" + latency.render() + "\n" + cpu.render() + "\n" + switches.render()
        if !results.workloads.isEmpty {
            var workloads = TextTable(["workload", "target", "seconds", "postmark tx/s (whole run)", "time vs local"])
            var failures: [String] = []
            for w in results.workloads {
                if let failure = w.failure {
                    workloads.add([w.workload, w.target, "failed", "—", "—"])
                    failures.append(failure.split(separator: "\n").first.map(String.init) ?? "")
                    continue
                }
                let local = results.workloads.first { $0.workload == w.workload && $0.target == "local" }?.seconds ?? 0
                workloads.add([w.workload, w.target, String(format: "%.2f", w.seconds),
                               w.transactionsPerSecond.map { String(format: "%.0f", $0) } ?? "—",
                               local > 0 ? String(format: "%.1f×", w.seconds / local) : "—"])
            }
            text += "\n" + workloads.render() + failures.map { "failed: \($0)\n" }.joined()
        }
        return text + "\n" + targetTable().render()
    }

    /// Issue 19's targets against this run, AFS mode; the first `--compare` directory stands for
    /// sshfs. The software-floor latencies are judged only on a `--tmpfs` run, and the disk's
    /// targets only on one without.
    func targetTable() -> TextTable {
        var table = TextTable(["target (issue 19)", "measured", "met"])
        func add(_ target: String, _ measured: String, _ met: Bool?) {
            table.add([target, measured, met.map { $0 ? "yes" : "no" } ?? "—"])
        }
        let afs = { (operation: String) in row(operation, "afs") }
        if results.tmpfs == true {
            let floor: [(String, Double)] = [("chmod", 120), ("utime", 120), ("rename", 150), ("unlink", 150), ("mkdir", 150),
                                             (OpsSuite.operations[0], 250), (OpsSuite.operations[1], 200)]
            for (operation, limit) in floor {
                guard let r = afs(operation) else { continue }
                add("\(operation) ≤ \(Int(limit)) µs (tmpfs)", String(format: "%.0f µs", r.medianMicroseconds), r.medianMicroseconds <= limit)
            }
        }
        if let chmod = afs("chmod") {
            if let switches = chmod.serverSwitches {
                add("server context switches per chmod ≤ 2", String(format: "%.1f", switches), switches <= 2)
            }
            if let switches = chmod.cacheManagerSwitches {
                add("cache manager context switches per chmod ≤ 2", String(format: "%.1f", switches), switches <= 2)
            }
            if let cpu = chmod.serverCPUMicroseconds { add("server CPU per chmod ≤ 60 µs", String(format: "%.0f µs", cpu), cpu <= 60) }
            if let cpu = chmod.cacheManagerCPUMicroseconds {
                add("cache manager CPU per chmod ≤ 40 µs", String(format: "%.0f µs", cpu), cpu <= 40)
            }
        }
        guard results.tmpfs != true else { return table }
        let other = targets.first { !["local", "afs", "nfs"].contains($0) }
        func workload(_ name: String, _ target: String) -> OpsSuite.WorkloadRow? {
            results.workloads.first { $0.workload == name && $0.target == target && $0.failure == nil }
        }
        if let other, let mine = workload("postmark", "afs")?.transactionsPerSecond, let theirs = workload("postmark", other)?.transactionsPerSecond {
            add("postmark ≥ 3× \(other)", String(format: "%.0f against %.0f tx/s (%.2f×)", mine, theirs, mine / theirs), mine >= 3 * theirs)
        }
        if let copy = results.workloads.first(where: { $0.workload.hasPrefix("cp -a") }),
           let mine = workload(copy.workload, "afs")?.seconds, let local = workload(copy.workload, "local")?.seconds, local > 0 {
            add("\(copy.workload) ≤ 3× local", String(format: "%.1f×", mine / local), mine <= 3 * local)
        }
        if let fsync = row(OpsSuite.operations[2], "local")?.medianMicroseconds, let create = afs(OpsSuite.operations[0])?.medianMicroseconds {
            add("create + 4 KiB + close ≤ the tmpfs floor + a local 4 KiB fsync", String(format: "%.0f µs; the local fsync row: %.0f µs", create, fsync), nil)
        }
        return table
    }

    public func json() throws -> Data { try benchJSON(results) }

    public func writeReport(to directory: String, date: String, command: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try json().write(to: URL(fileURLWithPath: directory + "/ops.json"))
        let colors = ["local": SVGChart.localColor, "afs": SVGChart.afsColor, "nfs": SVGChart.nfsColor]
        let others = ["#f0ad4e", "#777777", "#9b59b6"]
        let series = targets.enumerated().map { index, target in
            SVGChart.Series(name: target, color: colors[target] ?? others[index % others.count],
                            values: OpsSuite.operations.map { row($0, target)?.medianMicroseconds ?? 0 })
        }
        let chart = SVGChart.bars(title: "Latency per operation (median, log scale)", yLabel: "µs",
                                  categories: OpsSuite.operations, series: series, logScale: true)
        try chart.write(toFile: directory + "/ops-latency.svg", atomically: true, encoding: .utf8)
        let md = "# PeachFS: the cost of each operation\n\nMeasured \(date) with `\(command)`.\n\n```\n\(table())```\n\n"
            + "![latency per operation](ops-latency.svg)\n"
        try md.write(toFile: directory + "/report.md", atomically: true, encoding: .utf8)
    }
}
