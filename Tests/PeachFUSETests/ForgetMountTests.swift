import Foundation
import PeachLocalCluster
import PeachProtocol
import PeachSupport
import PeachTesting
import Testing

/// FUSE's forget through a real mount: the cache manager's state is bounded by the kernel's
/// inodes, not by every file it ever saw.
@Suite("Real FUSE mounts: forget", .serialized,
       .enabled(if: MountSupport.unavailableReason == nil, "\(MountSupport.unavailableReason ?? "")"))
struct ForgetMountTests {
    @Test("100k files touched, then the kernel drops its inodes: the cache manager forgets them too",
          arguments: [(ClientDesign.afs, 100), (ClientDesign.nfs, 20)])
    func hundredThousandFiles(design: ClientDesign, directories: Int) throws {
        let files = directories * 1000
        try withMounts { cluster in
            // Made at the server directly: directories of 1000 empty files (100k for AFS mode;
            // NFS mode, whose lookups cost a request each, takes 20k).
            let store = cluster.server.store
            for d in 0..<directories {
                let directory = try store.create(CreateRequest(directory: .root, name: "d\(d)", type: .directory, mode: 0o755,
                                                               uid: 0, gid: 0), client: .client("setup", design: .nfs)).value.target!.fid
                for f in 0..<1000 {
                    _ = try store.create(CreateRequest(directory: directory, name: "f\(f)", type: .regular, mode: 0o644,
                                                       uid: 0, gid: 0), client: .client("setup", design: .nfs))
                }
            }
            let mount = try cluster.mount("m", design: design)
            // stat every file: each name reaches the kernel, so each gets a vnode.
            let touched = try shell("find '\(mount.path)' -type f -printf '%s\\n' | wc -l")
            #expect(touched.output.trimmingCharacters(in: .whitespacesAndNewlines) == "\(files)")
            let peak = Files.counter(try Files.stats(mount), "vnodes")
            // The kernel lets go of its unused dentries and inodes, and forgets them to us.
            try shell("echo 2 > /proc/sys/vm/drop_caches")
            var after = peak
            for _ in 0..<50 where after > 1000 {
                usleep(100_000)
                after = Files.counter(try Files.stats(mount), "vnodes")
            }
            print("forget (\(design)): \(peak) vnodes after touching \(files) files, \(after) after the kernel dropped its inodes")
            // Kernel inodes, plus at most 4096 statuses the kernel was never given.
            #expect(peak >= files && peak < files + 4096 + 200)
            #expect(after < 1000)
            // What was forgotten is found again.
            #expect(Files.read(mount.path + "/d\(directories - 1)/f420") == "")
        }
    }
}
