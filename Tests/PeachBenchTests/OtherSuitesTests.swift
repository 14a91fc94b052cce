import Foundation
import PeachBench
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

@Suite("bench ops: issue 8's targets in the report")
struct OpsTargetTableTests {
    /// Results as `peach bench ops --json` writes them.
    func results() throws -> OpsSuite.Results {
        func op(_ operation: String, _ target: String, _ us: Double, server: Double? = nil, manager: Double? = nil) -> String {
            let cpu = server.map { ", \"serverCPUMicroseconds\": \($0), \"cacheManagerCPUMicroseconds\": \(manager ?? 0)" } ?? ""
            return "{\"operation\": \"\(operation)\", \"target\": \"\(target)\", \"medianMicroseconds\": \(us)\(cpu)}"
        }
        let operations = [
            op("create + write 4 KiB + close", "afs", 5000, server: 2500, manager: 2200),
            op("create + write 4 KiB + close", "/mnt/sshfs", 2500),
            op("open O_APPEND + write 4 KiB + close", "afs", 3000, server: 1900, manager: 700),
            op("chmod", "afs", 500, server: 320, manager: 240), op("chmod", "/mnt/sshfs", 600),
            op("unlink", "afs", 1000, server: 520, manager: 380), op("unlink", "/mnt/sshfs", 680),
        ]
        let workloads = """
            {"workload": "postmark", "target": "afs", "seconds": 70, "transactionsPerSecond": 200},
            {"workload": "postmark", "target": "/mnt/sshfs", "seconds": 40, "transactionsPerSecond": 400},
            {"workload": "cp -a /usr/include", "target": "local", "seconds": 2.5},
            {"workload": "cp -a /usr/include", "target": "afs", "seconds": 20},
            {"workload": "cp -a /usr/include", "target": "/mnt/sshfs", "seconds": 0, "failure": "cp -a into /mnt/sshfs failed: chown"}
            """
        let json = "{\"sync\": \"onclose\", \"operations\": [\(operations.joined(separator: ","))], \"workloads\": [\(workloads)]}"
        return try JSONDecoder().decode(OpsSuite.Results.self, from: Data(json.utf8))
    }

    @Test("each target is judged against the same run: sshfs's figures for sshfs's targets, local's for cp -a")
    func targetsJudged() throws {
        let table = OpsReport(results: try results()).table()
        let lines = table.split(separator: "\n").map(String.init)
        func verdict(_ target: String) -> String? {
            lines.first { $0.hasPrefix(target) }.map { $0.trimmingCharacters(in: .whitespaces).split(separator: " ").last.map(String.init) ?? "" }
        }
        #expect(verdict("AFS create + write 4 KiB + close ≤ 600 µs") == "no")
        #expect(verdict("AFS chmod ≤ /mnt/sshfs") == "yes")
        #expect(verdict("AFS unlink ≤ /mnt/sshfs") == "no")
        #expect(verdict("server CPU per metadata operation ≤ 150 µs") == "no")
        #expect(lines.contains { $0.contains("520 µs at most (unlink)") })
        #expect(verdict("server CPU per small store ≤ 250 µs") == "no")
        #expect(lines.contains { $0.contains("2200 µs at most (create + write 4 KiB + close)") })
        #expect(verdict("AFS postmark ≥ 3× /mnt/sshfs") == "no")
        #expect(verdict("AFS cp -a /usr/include ≤ 10× local") == "yes")
        // A failed workload's reason is a line of its own, not a table column.
        #expect(lines.contains("failed: cp -a into /mnt/sshfs failed: chown"))
    }
}
