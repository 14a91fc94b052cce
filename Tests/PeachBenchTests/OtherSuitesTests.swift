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
