import Foundation
import PeachBench
import PeachLocalCluster
import PeachSupport
import PeachTesting
import Testing

@Suite("Sharing, scale and Andrew suites")
struct OtherSuitesTests {
    @Test("sharing: AFS mode never serves a stale or torn read; NFS mode with nocto does serve stale ones")
    func sharing() throws {
        let rows = try SharingSuite(readers: 2, files: 4, rounds: 6, fileSize: 4096).run()
        let byDesign = Dictionary(uniqueKeysWithValues: rows.map { ($0.design, $0) })
        #expect(byDesign["afs"]?.staleReads == 0)
        #expect(byDesign["afs"]?.tornReads == 0)
        #expect(byDesign["nfs"]?.staleReads == 0, "close-to-open: no older version after an open")
        #expect((byDesign["nfs-nocto"]?.staleReads ?? 0) > 0)
        #expect(rows.allSatisfy { $0.reads > 0 && $0.writes == 24 })
    }

    @Test("scale: per client, the AFS-mode server answers fewer requests than the NFS-style one",
          .enabled(if: FileManager.default.isExecutableFile(atPath: MountSupport.peachBinary)))
    func scale() throws {
        let rows = try ScaleSuite(clientCounts: [2]).run()
        let afs = rows.first { $0.design == "afs" }!, nfs = rows.first { $0.design == "nfs" }!
        #expect(afs.requestsPerClient > 0)
        #expect(afs.requestsPerClient < nfs.requestsPerClient)
        #expect(afs.serverCPUSeconds > 0 && nfs.serverCPUSeconds > 0)
        #expect(ScaleReport(rows: rows).table().contains("requests/client"))
    }

    @Test("the generated source tree is about the original's size and builds with its Makefile",
          .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/cc") && FileManager.default.isExecutableFile(atPath: "/usr/bin/make")))
    func sourceTree() throws {
        let tree = SourceTree()
        #expect((60...80).contains(tree.files.count))
        #expect((150_000...250_000).contains(tree.totalBytes))
        let directory = try TemporaryDirectory(prefix: "peach-tree")
        defer { directory.remove() }
        let fs = MountedFileSystem(root: directory.path, isPeachMount: false)
        let workload = AndrewWorkload(tree: tree)
        try workload.writeSource(to: fs, root: "/src")
        for phase in AndrewWorkload.Phase.allCases {
            try workload.run(phase, on: fs, source: "/src", target: "/t") { try AndrewWorkload.compileWithMake(in: directory.path + $0) }
        }
        #expect(try shell("./andrew", in: directory.path + "/t").output.hasPrefix("andrew "))
    }

    @Test("tls: the same workloads through a plain and a TLS-only server, every figure measured",
          .enabled(if: MountSupport.unavailableReason == nil && FileManager.default.isExecutableFile(atPath: MountSupport.peachBinary)))
    func tls() throws {
        let rows = try TLSSuite(largeSize: 1 << 20, repetitions: 1, tree: SourceTree()).run()
        #expect(rows.first?.measurement.hasPrefix("cold whole-file fetch") == true)
        #expect(rows.allSatisfy { $0.plain > 0 && $0.tls > 0 && $0.ratio > 0 })
        #expect(rows.contains { $0.measurement == "andrew total" })
        #expect(TLSReport(rows: rows).table().contains("TLS/plain"))
    }
}

@Suite("bench ops: issue 19's targets in the report")
struct OpsTargetTableTests {
    /// Results as `peach bench ops --json` writes them, on disk or with `--tmpfs`.
    func results(tmpfs: Bool) throws -> OpsSuite.Results {
        func op(_ operation: String, _ target: String, _ us: Double, server: Double? = nil, manager: Double? = nil,
                switches: (Double, Double)? = nil) -> String {
            let cpu = server.map { ", \"serverCPUMicroseconds\": \($0), \"cacheManagerCPUMicroseconds\": \(manager ?? 0)" } ?? ""
            let counted = switches.map { ", \"serverSwitches\": \($0.0), \"cacheManagerSwitches\": \($0.1)" } ?? ""
            return "{\"operation\": \"\(operation)\", \"target\": \"\(target)\", \"medianMicroseconds\": \(us)\(cpu)\(counted)}"
        }
        let operations = [
            op("create + write 4 KiB + close", "afs", 1000, server: 580, manager: 430),
            op("create + write 4 KiB + close", "/mnt/sshfs", 1400),
            op("open + write 4 KiB + fsync + close", "local", 900),
            op("open O_APPEND + write 4 KiB + close", "afs", 190, server: 290, manager: 300),
            op("chmod", "afs", 110, server: 179, manager: 35, switches: (2.7, 2.0)), op("chmod", "/mnt/sshfs", 600),
            op("unlink", "afs", 537, server: 359, manager: 163), op("unlink", "/mnt/sshfs", 680),
        ]
        let workloads = """
            {"workload": "postmark", "target": "afs", "seconds": 70, "transactionsPerSecond": 1300},
            {"workload": "postmark", "target": "/mnt/sshfs", "seconds": 40, "transactionsPerSecond": 400},
            {"workload": "cp -a /usr/include", "target": "local", "seconds": 2.5},
            {"workload": "cp -a /usr/include", "target": "afs", "seconds": 20},
            {"workload": "cp -a /usr/include", "target": "/mnt/sshfs", "seconds": 0, "failure": "cp -a into /mnt/sshfs failed: chown"}
            """
        let json = "{\"sync\": \"delayed\", \"tmpfs\": \(tmpfs), \"operations\": [\(operations.joined(separator: ","))], \"workloads\": [\(workloads)]}"
        return try JSONDecoder().decode(OpsSuite.Results.self, from: Data(json.utf8))
    }

    func verdicts(tmpfs: Bool) throws -> (lines: [String], verdict: (String) -> String?) {
        let lines = OpsReport(results: try results(tmpfs: tmpfs)).table().split(separator: "\n").map(String.init)
        return (lines, { target in
            lines.first { $0.hasPrefix(target) }.map { $0.trimmingCharacters(in: .whitespaces).split(separator: " ").last.map(String.init) ?? "" }
        })
    }

    @Test("on tmpfs, the software floor's latencies, CPU and switches per chmod are judged; the disk's targets are not")
    func tmpfsTargets() throws {
        let (lines, verdict) = try verdicts(tmpfs: true)
        #expect(verdict("chmod ≤ 120 µs (tmpfs)") == "yes")
        #expect(verdict("unlink ≤ 150 µs (tmpfs)") == "no")
        #expect(verdict("create + write 4 KiB + close ≤ 250 µs (tmpfs)") == "no")
        #expect(verdict("open O_APPEND + write 4 KiB + close ≤ 200 µs (tmpfs)") == "yes")
        #expect(verdict("server context switches per chmod ≤ 2") == "no")
        #expect(verdict("cache manager context switches per chmod ≤ 2") == "yes")
        #expect(verdict("server CPU per chmod ≤ 60 µs") == "no")
        #expect(verdict("cache manager CPU per chmod ≤ 40 µs") == "yes")
        #expect(!lines.contains { $0.hasPrefix("postmark ≥") })
    }

    @Test("on disk, postmark and cp -a are judged against the same run: sshfs's figures, local's for cp -a")
    func diskTargets() throws {
        let (lines, verdict) = try verdicts(tmpfs: false)
        #expect(!lines.contains { $0.contains("(tmpfs)") })
        #expect(verdict("postmark ≥ 3× /mnt/sshfs") == "yes")
        #expect(verdict("cp -a /usr/include ≤ 3× local") == "no")
        #expect(lines.contains { $0.contains("the local fsync row: 900 µs") })
        // A failed workload's reason is a line of its own, not a table column.
        #expect(lines.contains("failed: cp -a into /mnt/sshfs failed: chown"))
    }
}
