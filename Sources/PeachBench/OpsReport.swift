import Foundation

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
        for operation in OpsSuite.operations {
            let cells = ["afs", "nfs"].flatMap { design -> [String] in
                let r = row(operation, design)
                return [r?.serverCPUMicroseconds, r?.cacheManagerCPUMicroseconds].map { $0.map { String(format: "%.0f", $0) } ?? "—" }
            }
            cpu.add([operation] + cells)
        }
        var text = "server --sync \(results.sync)\n\n" + latency.render() + "\n" + cpu.render()
        if !results.workloads.isEmpty {
            var workloads = TextTable(["workload", "target", "seconds", "postmark tx/s", "time vs local"])
            for w in results.workloads {
                if let failure = w.failure {
                    workloads.add([w.workload, w.target, "failed", "—", failure.split(separator: "\n").first.map(String.init) ?? ""])
                    continue
                }
                let local = results.workloads.first { $0.workload == w.workload && $0.target == "local" }?.seconds ?? 0
                workloads.add([w.workload, w.target, String(format: "%.2f", w.seconds),
                               w.transactionsPerSecond.map { String(format: "%.0f", $0) } ?? "—",
                               local > 0 ? String(format: "%.1f×", w.seconds / local) : "—"])
            }
            text += "\n" + workloads.render()
        }
        return text
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
