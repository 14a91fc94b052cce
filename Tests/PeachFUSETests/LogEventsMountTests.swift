import Foundation
import PeachLocalCluster
import PeachSupport
import PeachTesting
import Testing

/// The log lines an operator reads (issue 10): one per event that matters, through swift-log, and
/// a mount quiet by default.
@Suite("Real FUSE mounts: log events", .serialized,
       .enabled(if: MountSupport.unavailableReason == nil, "\(MountSupport.unavailableReason ?? "")"))
struct LogEventsMountTests {
    func text(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

    @Test("the server logs clients connecting and leaving; a mount logs a failed store and evictions, and only notices by default")
    func events() throws {
        try withMounts(serverArguments: ["--quota", "4M"]) { cluster in
            let quiet = try cluster.mount("quiet", design: .afs)
            let chatty = try cluster.mount("chatty", design: .afs, extraArguments: ["--log-level", "info", "--cache-size", "1M"])
            // Over the quota: close(2) fails, and the mount says why.
            let failed = try shell("head -c 5000000 /dev/zero > '\(quiet.path)/big'")
            #expect(failed.status != 0)
            #expect(text(quiet.log).contains("store failed"))
            // Past the 1 MiB cache: the earlier copies are evicted.
            try shell("rm -f '\(quiet.path)/big'; for i in 1 2 3 4 5; do head -c 300000 /dev/urandom > '\(quiet.path)/f'$i; done")
            for i in 1...5 { _ = Files.read(chatty.path + "/f\(i)") }
            cluster.unmount(chatty)
            #expect(text(chatty.log).contains(" info "))
            #expect(text(chatty.log).contains("cache evicted"), "\(text(chatty.log))")
            // Its own unmount is no news: the server was never away.
            #expect(!text(chatty.log).contains("file server unreachable"))
            // Quiet by default: notices and above only.
            #expect(!text(quiet.log).contains(" info "), "\(text(quiet.log))")
            #expect(!text(quiet.log).contains(" debug "))
            // The server logs the departure when it notices the closed connection, after the
            // mount process has gone.
            let serverLog = cluster.serverProcess!.log
            #expect(eventually { text(serverLog).contains("client disconnected") }, "\(text(serverLog))")
            #expect(text(serverLog).components(separatedBy: "client introduced").count - 1 == 2)
        }
    }
}
