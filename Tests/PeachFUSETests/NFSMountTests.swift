import Foundation
import PeachLocalCluster
import PeachSupport
import PeachTesting
import Testing

/// NFS-style mounts beside AFS-mode ones on one server, through the kernel.
@Suite("Real FUSE mounts: NFS-style and mixed", .serialized,
       .enabled(if: MountSupport.unavailableReason == nil, "\(MountSupport.unavailableReason ?? "")"))
struct NFSMountTests {
    static let shortTimeouts = ["--acregmin", "1", "--acregmax", "1", "--acdirmin", "1", "--acdirmax", "1"]

    @Test("through an NFS-style mount, stat and listings stay stale until the timeouts pass; an open sees the change")
    func stalenessThroughTheKernel() throws {
        try withMounts { cluster in
            let afs = try cluster.mount("afs", design: .afs)
            let nfs = try cluster.mount("nfs", design: .nfs, extraArguments: Self.shortTimeouts)
            #expect(try Files.write(afs.path + "/f", "12345") == 0)
            #expect(Files.size(nfs.path + "/f") == 5)
            let listed = try shell("ls '\(nfs.path)'").output
            #expect(try Files.write(afs.path + "/f", "1234567890") == 0)
            #expect(try Files.write(afs.path + "/new", "x") == 0)
            #expect(Files.size(nfs.path + "/f") == 5, "the attribute cache holds")
            #expect(try shell("ls '\(nfs.path)'").output == listed, "the directory listing holds")
            usleep(1_300_000)
            #expect(Files.size(nfs.path + "/f") == 10)
            #expect(try shell("ls '\(nfs.path)'").output == "f\nnew\n")
            // Close-to-open: an open after the writer's close sees the new content at once.
            #expect(try Files.write(afs.path + "/f", "third version, longer") == 0)
            #expect(Files.read(nfs.path + "/f") == "third version, longer")
            let stats = try Files.stats(nfs)
            #expect(stats["mode"] as? String == "nfs")
            #expect(Files.counter(stats, "callbacksReceived") == 0)
        }
    }

    @Test("a write through an NFS-style mount breaks the AFS-mode mount's callback")
    func mixedMounts() throws {
        try withMounts { cluster in
            let afs = try cluster.mount("afs", design: .afs)
            let nfs1 = try cluster.mount("nfs1", design: .nfs)
            let nfs2 = try cluster.mount("nfs2", design: .nfs)
            #expect(try Files.write(afs.path + "/f", "from afs") == 0)
            #expect(Files.read(afs.path + "/f") == "from afs")
            let before = Files.counter(try Files.stats(afs), "callbacksReceived")
            #expect(try Files.write(nfs1.path + "/f", "from nfs, longer") == 0)
            #expect(Files.counter(try Files.stats(afs), "callbacksReceived") > before)
            #expect(Files.read(afs.path + "/f") == "from nfs, longer")
            #expect(Files.read(nfs2.path + "/f") == "from nfs, longer")
        }
    }
}
