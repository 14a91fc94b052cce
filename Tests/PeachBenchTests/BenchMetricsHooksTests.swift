import Foundation
import PeachBench
import PeachLocalCluster
import PeachProtocol
import PeachServer
import PeachSupport
import PeachTesting
import Synchronization
import Testing

/// `peach bench andrew --metrics`: each cluster hands its server to the hook, and each design's
/// mount is started with the hook's options, so Prometheus sees the run's mounts too.
@Suite("Benchmark metrics hooks", .serialized,
       .enabled(if: MountSupport.unavailableReason == nil, "\(MountSupport.unavailableReason ?? "")"))
struct BenchMetricsHooksTests {
    @Test("a mounted cluster reports its server to the hook and starts the AFS-mode mount with its --metrics, which counts the opens")
    func hooksReachServerAndMounts() throws {
        let port = try LoopbackSocket.freePort()
        let servers = Mutex(0)
        let hooks = BenchMetricsHooks(serverStarted: { _ in servers.withLock { $0 += 1 } },
                                      mountArguments: { design in design == .afs ? ["--metrics", "127.0.0.1:\(port)"] : [] })
        try BenchCluster.with(mounted: true, metrics: hooks) { cluster in
            try cluster.writer.writeFile("/f", Array("hello".utf8), truncate: true)
            let afs = try cluster.client(.afs)
            for _ in 0..<3 { _ = try afs.readBytes("/f") }
            let scrape = try shell("curl -s http://127.0.0.1:\(port)/metrics").output
            let opens = scrape.split(separator: "\n").first { $0.hasPrefix("peach_cache_opens_total ") }
            #expect(opens == "peach_cache_opens_total 3", "\(scrape.prefix(400))")
            #expect(scrape.contains("peach_cache_open_hits_total 2"))
        }
        #expect(servers.withLock { $0 } == 1)
    }
}
