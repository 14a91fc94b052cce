import Foundation
import PeachBench
import PeachLocalCluster
import PeachSupport
import PeachTesting
import Testing

/// The OSTEP suite measures what the chapter predicts, in-process, with small sizes.
@Suite("OSTEP comparison suite")
struct OSTEPSuiteTests {
    static let tiny = OSTEPSuite.Sizes(smallFiles: 4, small: 16 << 10, medium: 256 << 10, large: 2 << 20,
                                       nfsCacheSize: 1 << 20, blockSize: 64 << 10)

    @Test("every workload runs for both designs and shows the chapter's relations")
    func chapterRelations() throws {
        let rows = try OSTEPSuite(sizes: Self.tiny, mounted: false).run()
        #expect(rows.count == 22)
        func row(_ w: Int, _ d: String) -> OSTEPSuite.Row { rows.first { $0.workload == w && $0.design == d }! }
        func moved(_ r: OSTEPSuite.Row) -> Double { Double(r.fetchedBytes + r.storedBytes) }
        // Rows 1-5, 8, 9: the same bytes within 5%.
        for w in [1, 3, 5, 8, 9] {
            #expect(abs(moved(row(w, "afs")) - moved(row(w, "nfs"))) <= 0.05 * moved(row(w, "nfs")), "row \(w)")
        }
        for w in [2, 4] {
            #expect(row(w, "afs").fetchedBytes == 0 && row(w, "nfs").fetchedBytes == 0, "row \(w): re-read from cache")
            #expect(row(w, "afs").hitRate == 1 && row(w, "nfs").hitRate == 1)
        }
        // Row 6: the large file is in the AFS disk cache but not in the NFS memory cache.
        #expect(row(6, "afs").fetchedBytes == 0)
        #expect(row(6, "nfs").fetchedBytes >= UInt64(Self.tiny.large))
        // Row 7: AFS fetches the whole file for one block.
        #expect((UInt64(Self.tiny.large)..<UInt64(Self.tiny.large) + 4096).contains(row(7, "afs").fetchedBytes), "the file and its directory")
        #expect(row(7, "nfs").fetchedBytes == UInt64(Self.tiny.blockSize))
        // Row 10 with O_TRUNC: AFS moves NL, not 2·NL.
        #expect(row(10, "afs").fetchedBytes < 1024)
        #expect(row(10, "afs").storedBytes == UInt64(Self.tiny.large))
        // Row 11: AFS moves the file twice, NFS about a block.
        #expect(moved(row(11, "afs")) >= 2 * Double(Self.tiny.large))
        #expect(moved(row(11, "nfs")) <= 2 * Double(Self.tiny.blockSize))
    }

    @Test("the report writes a table, JSON with the contract's keys, and SVG charts")
    func report() throws {
        let rows = try OSTEPSuite(sizes: Self.tiny, mounted: false).run(only: [1, 7])
        let report = OSTEPReport(rows: rows, sizes: Self.tiny, mounted: false)
        #expect(report.table().contains("large file, single read"))
        let json = try JSONSerialization.jsonObject(with: report.json()) as? [String: Any]
        #expect(json?["suite"] as? String == "ostep")
        let first = (json?["rows"] as? [[String: Any]])?.first ?? [:]
        for key in ["workload", "name", "design", "serverRequests", "fetchedBytes", "storedBytes", "hitRate", "seconds"] {
            #expect(first[key] != nil, "row has \(key)")
        }
        let directory = try TemporaryDirectory(prefix: "peach-report")
        defer { directory.remove() }
        try report.writeReport(to: directory.path, date: "today", command: "test")
        for file in ["report.md", "hit-rate.svg", "server-requests.svg", "bytes-moved.svg", "ostep.json"] {
            #expect(FileManager.default.fileExists(atPath: directory.path + "/" + file), "\(file)")
        }
        let svg = try String(contentsOfFile: directory.path + "/hit-rate.svg", encoding: .utf8)
        #expect(svg.hasPrefix("<svg") && svg.contains("AFS mode"))
    }

    @Test("peach bench ostep prints its table, not the log lines of the server and clients it runs in-process")
    func quietOutput() throws {
        let directory = try TemporaryDirectory(prefix: "peach-quiet")
        defer { directory.remove() }
        let run = try shell("'\(MountSupport.peachBinary)' bench ostep --quick --only 2", in: directory.path)
        #expect(run.status == 0, "\(run.output)")
        #expect(run.output.contains("small file, sequential re-read"))
        #expect(!run.output.contains(" info "), "\(run.output)")
    }
}

