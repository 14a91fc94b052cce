import Dispatch
import Foundation
import PeachLocalCluster
import PeachSupport
import PeachTesting
import Testing

/// A cache manager's own disk may be slow or stall; its callback breaks are acknowledged all the
/// same (issue 8): a break waits for no disk write, so other clients' closes do not wait for it.
@Suite("Real FUSE mounts: a stalled cache disk", .serialized,
       .enabled(if: MountSupport.unavailableReason == nil, "\(MountSupport.unavailableReason ?? "")"))
struct StalledDiskMountTests {
    @Test("a break is acknowledged while the cache disk stalls in the middle of a large fetch")
    func breakDuringStalledFetch() throws {
        // A long callback timeout: a break that waited for the stalled disk would hold B's close
        // far past the deadline below.
        try withMounts(serverArguments: ["--callback-timeout", "240"]) { cluster in
            // A's "disk" is another PeachFS mount. SIGSTOP of its cache manager makes every call on
            // it wait, as on a disk that stopped answering; SIGCONT brings it back.
            let disk = try cluster.mount("disk", design: .afs)
            let proxy = try TCPProxy(targetPort: cluster.port)
            defer { proxy.stop() }
            let a = try cluster.mount("a", design: .afs, through: proxy, cache: disk.path + "/cache-a")
            let b = try cluster.mount("b", design: .afs)
            var diskStopped = false
            defer {
                if diskStopped { cluster.signal(disk, SIGCONT) }
                // A first: its cache is on the disk mount.
                cluster.unmount(a)
            }

            // 96 MiB: more than A queues for its disk, so the fetch must wait for the disk.
            var content = Data()
            let mebibyte = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            for index in 0..<96 { content.append(contentsOf: [UInt8(index)] + mebibyte.dropFirst()) }
            #expect(FileManager.default.createFile(atPath: b.path + "/large", contents: content))
            #expect(try Files.write(b.path + "/small", "old") == 0)
            #expect(Files.read(a.path + "/small") == "old")  // A now holds a callback on it

            // A starts fetching the large file; its data is held back until the disk has stalled.
            proxy.holdReplies()
            let log = cluster.directory.path + "/reader.log"
            let fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            let reader = try ChildProcess(["cmp", a.path + "/large", b.path + "/large"], outputFD: fd)
            close(fd)
            defer {
                reader.signal(SIGKILL)
                reader.wait()
            }
            let files = disk.path + "/cache-a/files"
            var started = false
            for _ in 0..<200 where !started {
                started = ((try? FileManager.default.contentsOfDirectory(atPath: files)) ?? []).contains { $0.hasPrefix("fetch-") }
                if !started { usleep(50_000) }
            }
            #expect(started, "A never began the fetch")
            cluster.signal(disk, SIGSTOP)
            diskStopped = true
            proxy.release()
            usleep(1_000_000)  // the data arrives; A's disk takes none of it

            // B's close breaks A's callback on the small file: it returns once A acknowledges.
            let closed = DispatchSemaphore(value: 0)
            Thread.detachNewThread {
                _ = try? Files.write(b.path + "/small", "new")
                closed.signal()
            }
            let acknowledged = closed.wait(timeout: .now() + 30) == .success
            #expect(acknowledged, "B's close waited for A's stalled disk")
            #expect(reader.isRunning, "the fetch must still be waiting for the disk")

            cluster.signal(disk, SIGCONT)
            diskStopped = false
            if !acknowledged { closed.wait() }
            #expect(reader.wait() == 0, "\((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
            #expect(Files.read(a.path + "/small") == "new")
        }
    }
}
