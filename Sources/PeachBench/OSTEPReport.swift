import Foundation
import PeachSupport

/// The OSTEP suite's outputs: the terminal table, the JSON document, the report with charts.
public struct OSTEPReport: BenchReport {
    public var rows: [OSTEPSuite.Row]
    public var sizes: OSTEPSuite.Sizes
    public var mounted: Bool

    public init(rows: [OSTEPSuite.Row], sizes: OSTEPSuite.Sizes, mounted: Bool) {
        self.rows = rows
        self.sizes = sizes
        self.mounted = mounted
    }

    func row(_ workload: Int, _ design: String) -> OSTEPSuite.Row? {
        rows.first { $0.workload == workload && $0.design == design }
    }

    /// AFS bytes moved over NFS bytes moved, as text.
    func measuredRatio(_ workload: Int) -> String {
        guard let afs = row(workload, "afs"), let nfs = row(workload, "nfs") else { return "" }
        let a = Double(afs.fetchedBytes + afs.storedBytes), n = Double(nfs.fetchedBytes + nfs.storedBytes)
        if a == 0 && n == 0 { return "both 0" }
        if n == 0 { return "∞" }
        let ratio = a / n
        return ratio >= 100 ? String(format: "%.0f", ratio) : String(format: "%.2f", ratio)
    }

    func hitRate(_ row: OSTEPSuite.Row) -> String {
        row.hitRate.map { String(format: "%.2f", $0) } ?? "—"
    }

    public var sizeLine: String {
        "small: \(sizes.smallFiles) files of \(formatBytes(UInt64(sizes.small))); medium: \(formatBytes(UInt64(sizes.medium))); "
            + "large: \(formatBytes(UInt64(sizes.large))) (NL = \(sizes.largeBlocks) blocks of \(formatBytes(UInt64(sizes.blockSize)))); "
            + "NFS memory cache: \(formatBytes(UInt64(sizes.nfsCacheSize))); clients: \(mounted ? "FUSE mounts" : "in-process")"
    }

    public func table() -> String {
        var table = TextTable(["#", "workload", "design", "requests", "fetched", "stored", "hit rate", "time",
                               "chapter AFS/NFS", "measured AFS/NFS (bytes)"])
        for r in rows {
            let first = r.design == "afs"
            table.add([first ? "\(r.workload)" : "", first ? r.name : "", r.design, "\(r.serverRequests)",
                       formatBytes(r.fetchedBytes), formatBytes(r.storedBytes), hitRate(r), formatSeconds(r.seconds),
                       first ? r.predictedRatio : "", first ? measuredRatio(r.workload) : ""])
        }
        return table.render() + sizeLine + "\n"
    }

    public func json() throws -> Data {
        struct Document: Encodable {
            var suite = "ostep"
            var mounted: Bool
            var sizes: OSTEPSuite.Sizes
            var rows: [OSTEPSuite.Row]
        }
        return try benchJSON(Document(mounted: mounted, sizes: sizes, rows: rows))
    }

    public func writeReport(to directory: String, date: String, command: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let workloads = Array(Set(rows.map(\.workload))).sorted()
        // Each workload by its number and name, as the table names it.
        func named(_ w: Int) -> String { "\(w). " + (rows.first { $0.workload == w }?.name ?? "") }
        let categories = workloads.map(named)
        func values(_ design: String, _ value: (OSTEPSuite.Row) -> Double) -> [Double] {
            workloads.map { w in row(w, design).map(value) ?? 0 }
        }
        // Hit rates exist for the read workloads only; writes are left out rather than drawn as 0.
        let readWorkloads = workloads.filter { w in rows.contains { $0.workload == w && $0.hitRate != nil } }
        let hit = SVGChart.bars(title: "Hit rate per read workload (share of bytes read needing no transfer)", yLabel: "hit rate",
                                categories: readWorkloads.map(named), series: [
                                    .init(name: "AFS mode", color: SVGChart.afsColor,
                                          values: readWorkloads.map { row($0, "afs")?.hitRate ?? 0 }),
                                    .init(name: "NFS mode", color: SVGChart.nfsColor,
                                          values: readWorkloads.map { row($0, "nfs")?.hitRate ?? 0 }),
                                ])
        let requests = SVGChart.bars(title: "Server requests per workload", yLabel: "requests", categories: categories, series: [
            .init(name: "AFS mode", color: SVGChart.afsColor, values: values("afs") { Double($0.serverRequests) }),
            .init(name: "NFS mode", color: SVGChart.nfsColor, values: values("nfs") { Double($0.serverRequests) }),
        ], logScale: true)
        let bytes = SVGChart.bars(title: "Bytes moved per workload (fetched + stored)", yLabel: "bytes", categories: categories, series: [
            .init(name: "AFS mode", color: SVGChart.afsColor, values: values("afs") { Double($0.fetchedBytes + $0.storedBytes) }),
            .init(name: "NFS mode", color: SVGChart.nfsColor, values: values("nfs") { Double($0.fetchedBytes + $0.storedBytes) }),
        ], logScale: true, ratio: .init(numerator: 0, denominator: 1, label: "AFS/NFS bytes, as the table's last column"))
        try hit.write(toFile: directory + "/hit-rate.svg", atomically: true, encoding: .utf8)
        try requests.write(toFile: directory + "/server-requests.svg", atomically: true, encoding: .utf8)
        try bytes.write(toFile: directory + "/bytes-moved.svg", atomically: true, encoding: .utf8)
        try json().write(to: URL(fileURLWithPath: directory + "/ostep.json"))

        var md = """
            # PeachFS: the AFS-versus-NFS comparison (OSTEP)

            Measured \(date) with `\(command)`. \(sizeLine).

            Each workload ran against a fresh server with one client of each design; the files it
            reads were written by a third client, so neither measured client had them cached.
            "chapter AFS/NFS" is the cost ratio OSTEP's chapter predicts; "measured" divides the
            bytes the AFS-mode client moved by the bytes the NFS-mode client moved.

            ![Hit rate](hit-rate.svg)

            ![Server requests](server-requests.svg)

            ![Bytes moved](bytes-moved.svg)

            | # | workload | chapter NFS | chapter AFS | chapter AFS/NFS | design | requests | fetched | stored | hit rate | time | measured AFS/NFS (bytes) |
            |---|---|---|---|---|---|---|---|---|---|---|---|

            """
        let suite = OSTEPSuite(sizes: sizes, mounted: mounted)
        for w in suite.workloads where workloads.contains(w.number) {
            for design in ["afs", "nfs"] {
                guard let r = row(w.number, design) else { continue }
                let first = design == "afs"
                md += "| \(first ? "\(w.number)" : "") | \(first ? w.name : "") | \(first ? w.nfsCost : "") | \(first ? w.afsCost : "") | "
                    + "\(first ? w.predictedRatio : "") | \(design) | \(r.serverRequests) | \(formatBytes(r.fetchedBytes)) | "
                    + "\(formatBytes(r.storedBytes)) | \(hitRate(r)) | \(formatSeconds(r.seconds)) | \(first ? measuredRatio(w.number) : "") |\n"
            }
        }
        md += """

            Notes: row 10 opens the file with O_TRUNC, so the AFS-mode client fetches nothing before it
            writes: it moves NL, not the chapter's 2·NL. Requests by type for each row are in
            ostep.json (`rpcs`).

            """
        try md.write(toFile: directory + "/report.md", atomically: true, encoding: .utf8)
    }
}
