import Foundation
import PeachLocalCluster
import PeachProtocol
import PeachSupport
import PeachTesting
import Testing

/// POSIX corners a conformance suite found through real mounts (issue 9): sparse files, sizes
/// past the largest file, and files unlinked while open. Each runs on both designs.
@Suite("Real FUSE mounts: POSIX corners", .serialized,
       .enabled(if: MountSupport.unavailableReason == nil, "\(MountSupport.unavailableReason ?? "")"))
struct PosixCornerMountTests {
    func preadText(_ fd: Int32, count: Int, at offset: off_t) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0xff, count: count)
        let n = pread(fd, &buffer, count, offset)
        return n < 0 ? nil : Array(buffer[0..<n])
    }

    @Test("a hole before a write reads as zeros, every time, before and after close", arguments: ClientDesign.allCases)
    func sparseWrite(design: ClientDesign) throws {
        try withMounts { cluster in
            let mount = try cluster.mount("m", design: design)
            let path = mount.path + "/sparse"
            let fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o644)
            #expect(fd >= 0)
            let tail = Array("0123456789".utf8)
            #expect(pwrite(fd, tail, tail.count, 200_000) == 10)
            let zeros = [UInt8](repeating: 0, count: 10)
            #expect(preadText(fd, count: 10, at: 0) == zeros)
            #expect(preadText(fd, count: 10, at: 0) == zeros, "the same read again")
            #expect(preadText(fd, count: 10, at: 200_000) == tail)
            #expect(close(fd) == 0)
            #expect(Files.size(path) == 200_010)
            let again = open(path, O_RDONLY)
            #expect(preadText(again, count: 10, at: 0) == zeros, "after close and reopen")
            #expect(preadText(again, count: 10, at: 100_000) == zeros)
            #expect(preadText(again, count: 20, at: 199_995) == [0, 0, 0, 0, 0] + tail)
            close(again)
            let reader = try cluster.mount("reader", design: .nfs)
            #expect(Files.read(reader.path + "/sparse").map(\.utf8.count) == 200_010)
        }
    }

    @Test("truncate and ftruncate past the largest file size fail with EFBIG and change nothing", arguments: ClientDesign.allCases)
    func truncatePastMaximum(design: ClientDesign) throws {
        try withMounts { cluster in
            let mount = try cluster.mount("m", design: design)
            let path = mount.path + "/f"
            #expect(try Files.write(path, "twelve bytes") == 0)
            #expect(truncate(path, 999_999_999_999_999) == -1)
            #expect(errno == EFBIG)
            let fd = open(path, O_RDWR)
            #expect(ftruncate(fd, 999_999_999_999_999) == -1)
            #expect(errno == EFBIG)
            #expect(close(fd) == 0)
            #expect(Files.read(path) == "twelve bytes")
        }
    }

    @Test("a file unlinked while open keeps working through its descriptor: fstat says nlink 0, reads return what was written",
          arguments: ClientDesign.allCases)
    func unlinkedWhileOpen(design: ClientDesign) throws {
        try withMounts { cluster in
            let mount = try cluster.mount("m", design: design)
            let path = mount.path + "/doomed"
            // Stored before: several blocks the cache manager has not read yet.
            let stored = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 % 253) }
            #expect(FileManager.default.createFile(atPath: path, contents: Data(stored)))
            let fd = open(path, O_RDWR)
            #expect(fd >= 0)
            let first = Array("written before the unlink".utf8)
            #expect(write(fd, first, first.count) == first.count)
            #expect(unlink(path) == 0)
            var st = stat()
            #expect(fstat(fd, &st) == 0)
            #expect(st.st_nlink == 0)
            #expect(preadText(fd, count: first.count, at: 0) == first)
            let more = Array(", and after".utf8)
            #expect(pwrite(fd, more, more.count, off_t(first.count)) == more.count)
            let expected = first + more + stored[(first.count + more.count)...]
            #expect(preadText(fd, count: 400_000, at: 0) == expected, "the whole file, as written")
            #expect(ftruncate(fd, 10) == 0)
            #expect(fstat(fd, &st) == 0 && st.st_size == 10)
            #expect(close(fd) == 0)
            #expect(access(path, F_OK) == -1 && errno == ENOENT)
            let reader = try cluster.mount("reader", design: .nfs)
            #expect(access(reader.path + "/doomed", F_OK) == -1)
        }
    }

    @Test("the fsx sequence of issue 17 on one file of one mount: all operations, then no mapped ones, then close/reopen 1 in 10 with pages invalidated after writes",
          arguments: ClientDesign.allCases)
    func exerciserSequence(design: ClientDesign) throws {
        let count = Int(ProcessInfo.processInfo.environment["PEACH_EXERCISER_OPS"] ?? "") ?? 2000
        // The server on tmpfs: with no disk to wait for, the kernel's parallel writes and reads
        // of one block interleave as tightly as they did when the NFS-mode races showed.
        let shm = try TemporaryDirectory(prefix: "peach-fsx", in: "/dev/shm")
        defer { shm.remove() }
        try withMounts(serverRoot: shm.path + "/server") { cluster in
            // PEACH_FSX_NFS_ARGS="--acregmin 0.002 --block-size 16K", say: more mount options for NFS mode, to stress other timings.
            let extra = design == .nfs ? (ProcessInfo.processInfo.environment["PEACH_FSX_NFS_ARGS"]?.split(separator: " ").map(String.init) ?? []) : []
            let mount = try cluster.mount("m", design: design, extraArguments: extra, cache: shm.path + "/cache")
            let runs: [(String, Int, FileExerciser.Options)] = [
                ("all operations", count, .init()),
                ("no mapped operations (fsx -R -W)", count / 5, .init(mapped: false)),
                ("close/reopen 1 in 10, invalidate after writes (fsx -c 10 -f)", count / 10 * 3,
                 .init(closeOneIn: 10, invalidateAfterWrites: true)),
            ]
            for (name, operations, options) in runs {
                var exerciser = FileExerciser(path: mount.path + "/fsx", seed: 7, options: options)
                do { try exerciser.run(operations) } catch { Issue.record("\(design), \(name): \(error)") }
            }
        }
    }

    @Test("a seeded fsx-style run (writes, reads, mapped reads, truncates, reopens) matches its model", arguments: ClientDesign.allCases)
    func exerciser(design: ClientDesign) throws {
        // PEACH_EXERCISER_OPS=100000 for the long run of the issue.
        let count = Int(ProcessInfo.processInfo.environment["PEACH_EXERCISER_OPS"] ?? "") ?? 2000
        try withMounts { cluster in
            let mount = try cluster.mount("m", design: design)
            var exerciser = FileExerciser(path: mount.path + "/fsx", seed: 0x5eed_f5c)
            do { try exerciser.run(count) } catch { Issue.record("\(design): \(error)") }
        }
    }
}
