import Foundation
import PeachLocalCluster
import PeachSupport
import PeachTesting
import Testing

/// `peach fs storebehind` and `peach mount --store-behind` (issue 19, item 6), on real mounts.
@Suite("Real FUSE mounts: store-behind", .serialized,
       .enabled(if: MountSupport.unavailableReason == nil, "\(MountSupport.unavailableReason ?? "")"))
struct StoreBehindMountTests {
    let peach = "'\(MountSupport.peachBinary)'"

    @Test("with store-behind a close returns while the server is down; the store lands when it is back, and fs sync waits for it")
    func closeReturnsBeforeTheStore() throws {
        try withMounts { cluster in
            let a = try cluster.mount("a", design: .afs, extraArguments: ["--store-behind"])
            let b = try cluster.mount("b", design: .afs)
            #expect(try Files.write(a.path + "/f", "first") == 0)
            try shell("\(peach) fs sync '\(a.path)'")
            #expect(Files.read(b.path + "/f") == "first")
            cluster.stopServer()
            // The close needs no server: killed after 5 s if it waited for one (a hard mount's
            // store would wait until the server is back).
            let write = try shell("timeout -s KILL 5 sh -c \"printf second > '\(a.path)/f'\"")
            #expect(write.status == 0, "the close waited for the server: \(write.output)")
            let state = try shell("\(peach) fs storebehind '\(a.path)'")
            // At least the one store (the shell's redirection may close, and flush, twice).
            #expect(state.status == 0 && state.output.contains("store-behind is on;") && !state.output.contains("; 0 closed"),
                    "\(state.output)")
            try cluster.startServer()
            let sync = try shell("\(peach) fs sync '\(a.path)'")
            #expect(sync.status == 0, "\(sync.output)")
            #expect(Files.read(b.path + "/f") == "second")
        }
    }

    @Test("fs storebehind turns it on and off for a mount; off, a close stores before it returns")
    func toggles() throws {
        try withMounts { cluster in
            let a = try cluster.mount("a", design: .afs)
            let b = try cluster.mount("b", design: .afs)
            #expect(try shell("\(peach) fs storebehind '\(a.path)'").output.contains("store-behind is off"))
            #expect(try shell("\(peach) fs storebehind --on '\(a.path)'").output.contains("store-behind is on"))
            #expect(try Files.write(a.path + "/g", "behind") == 0)
            try shell("\(peach) fs sync '\(a.path)'")
            #expect(Files.read(b.path + "/g") == "behind")
            #expect(try shell("\(peach) fs storebehind --off '\(a.path)'").output.contains("store-behind is off"))
            // Off again: the close itself stores, so the other mount sees it with no sync.
            #expect(try Files.write(a.path + "/g", "at close") == 0)
            #expect(Files.read(b.path + "/g") == "at close")
            let both = try shell("\(peach) fs storebehind --on --off '\(a.path)'")
            #expect(both.status != 0 && both.output.contains("not both"))
            let nfs = try cluster.mount("n", design: .nfs)
            let refused = try shell("\(peach) fs storebehind '\(nfs.path)'")
            #expect(refused.status != 0, "\(refused.output)")
        }
    }
}
