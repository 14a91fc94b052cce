import Foundation
import PeachLocalCluster
import PeachSupport
import PeachTesting
import Testing

/// Failure modes found in review: each would pass unnoticed by the happy-path tests.
@Suite("Real FUSE mounts: robustness", .serialized,
       .enabled(if: MountSupport.unavailableReason == nil, "\(MountSupport.unavailableReason ?? "")"))
struct RobustnessTests {
    let peach = "'\(MountSupport.peachBinary)'"

    @Test("two mounts creating files in one directory at once never wait out a break (no client declared unreachable)")
    func concurrentCreates() throws {
        try withMounts { cluster in
            let a = try cluster.mount("a")
            let b = try cluster.mount("b")
            try shell("mkdir '\(a.path)/shared'")
            _ = Files.read(b.path + "/shared/none")
            let result = try shell("""
                (for i in $(seq 40); do touch '\(a.path)/shared/'a$i; done) &
                (for i in $(seq 40); do touch '\(b.path)/shared/'b$i; done) &
                wait
                ls '\(a.path)/shared' | wc -l
                """)
            #expect(result.output.hasSuffix("80\n"))
            #expect(cluster.server.statistics.snapshot().clientsDeclaredUnreachable == 0)
        }
    }

    @Test("after the connection to the server drops, a cached file is revalidated, not served stale")
    func reconnectRevalidates() throws {
        try withMounts { cluster in
            let a = try cluster.mount("a")
            let b = try cluster.mount("b", design: .nfs)
            #expect(try Files.write(a.path + "/f", "before") == 0)
            #expect(Files.read(a.path + "/f") == "before")
            cluster.stopServer()
            try cluster.startServer()
            #expect(try Files.write(b.path + "/f", "after the restart") == 0)
            #expect(Files.read(a.path + "/f") == "after the restart")
        }
    }

    @Test("fs flush of an open file answers EBUSY and loses nothing written after it")
    func flushOpenFile() throws {
        try withMounts { cluster in
            let a = try cluster.mount("a")
            let fd = open(a.path + "/f", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            #expect(Foundation.write(fd, "first ", 6) == 6)
            let flush = try shell("\(peach) fs flush '\(a.path)/f'")
            #expect(flush.status != 0 && flush.output.contains("busy"))
            #expect(Foundation.write(fd, "second", 6) == 6)
            #expect(close(fd) == 0)
            #expect(Files.read(a.path + "/f") == "first second")
        }
    }

    @Test("a second mount on a cache directory in use fails with one line")
    func cacheDirectoryInUse() throws {
        try withMounts { cluster in
            let a = try cluster.mount("a")
            let target = try cluster.directory.subdirectory("second")
            let result = try shell("\(peach) mount '\(target)' --server \(cluster.address) --cache '\(a.cache)'")
            #expect(result.status != 0)
            #expect(result.output.contains("in use"))
            #expect(!MountedCluster.isMounted(target))
        }
    }

    @Test("fs flush of a file outside PeachFS fails and sets no attribute on it")
    func flushOutsidePeachFS() throws {
        let directory = try TemporaryDirectory(prefix: "peach-local")
        defer { directory.remove() }
        try shell("echo x > '\(directory.path)/f'")
        let result = try shell("\(peach) fs flush '\(directory.path)/f'")
        #expect(result.status != 0 && result.output.contains("not in a PeachFS mount"))
        #expect(try shell("getfattr -d '\(directory.path)/f' 2>/dev/null; python3 -c 'import os,sys; print(os.listxattr(sys.argv[1]))' '\(directory.path)/f'").output.contains("[]"))
    }
}
