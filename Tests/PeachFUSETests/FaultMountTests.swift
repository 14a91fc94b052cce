import Foundation
import NIOConcurrencyHelpers
import PeachLocalCluster
import PeachProtocol
import PeachSupport
import PeachTesting
import Testing

/// Faults injected for real (SIGKILL of a `peach server` or `peach mount` process) and what they
/// may not do: lose or tear a dirty file, or store an old copy over a newer version (issue 9).
@Suite("Real FUSE mounts: faults", .serialized,
       .enabled(if: MountSupport.unavailableReason == nil, "\(MountSupport.unavailableReason ?? "")"))
struct FaultMountTests {
    let peach = "'\(MountSupport.peachBinary)'"

    /// Opens `path` with `flags`, writes `bytes`, and returns the open descriptor.
    func openAndWrite(_ path: String, _ bytes: [UInt8], flags: Int32) throws -> Int32 {
        let fd = open(path, flags | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw MountError(description: "open \(path): \(String(cString: strerror(errno)))") }
        guard Foundation.write(fd, bytes, bytes.count) == bytes.count else {
            close(fd)
            throw MountError(description: "write \(path): \(String(cString: strerror(errno)))")
        }
        return fd
    }

    /// The file's bytes in a form a failed expectation prints in one line: size and a checksum.
    func contents(_ path: String) -> String {
        guard let data = try? Data(contentsOf: URL(fileURLWithPath: path)) else { return "unreadable: \(String(cString: strerror(errno)))" }
        return Self.summary(Array(data))
    }

    static func summary(_ bytes: [UInt8]) -> String {
        "\(bytes.count) bytes, FNV-1a \(bytes.reduce(UInt64(0xcbf29ce484222325)) { ($0 ^ UInt64($1)) &* 0x100000001b3 })"
    }

    enum Rewrite: String, CaseIterable, CustomTestStringConvertible {
        case truncate, append
        var flags: Int32 { self == .truncate ? O_WRONLY | O_TRUNC : O_WRONLY | O_APPEND }
        var testDescription: String { rawValue }
    }

    /// A soft mount, so that a close fails instead of waiting for the server.
    static let soft = ["--soft", "--timeout", "1"]

    @Test("a close that failed because the server died is stored whole at the next mount", arguments: Rewrite.allCases)
    func failedCloseStoredAtNextMount(rewrite: Rewrite) throws {
        try withMounts(serverArguments: []) { cluster in
            let a = try cluster.mount("a", extraArguments: Self.soft)
            let old = [UInt8](repeating: 0x6f, count: 1200)
            let new = (0..<2400).map { UInt8(truncatingIfNeeded: $0 % 251) }
            let fd0 = try openAndWrite(a.path + "/f", old, flags: O_WRONLY | O_CREAT | O_TRUNC)
            #expect(close(fd0) == 0)
            let fd = try openAndWrite(a.path + "/f", new, flags: rewrite.flags)
            cluster.killServer()
            #expect(close(fd) != 0, "close(2) cannot succeed: the store had nowhere to go")
            cluster.unmount(a)
            try cluster.startServer()
            let again = try cluster.mount("a")
            let expected = Self.summary(rewrite == .truncate ? new : old + new)
            #expect(contents(again.path + "/f") == expected)
            let reader = try cluster.mount("reader", design: .nfs)
            #expect(contents(reader.path + "/f") == expected, "the server holds the recovered bytes")
        }
    }

    @Test("a cache manager killed between write() and close() stores what was written at its next mount")
    func cacheManagerKilledBeforeClose() throws {
        try withMounts(serverArguments: []) { cluster in
            let a = try cluster.mount("a")
            let fd0 = try openAndWrite(a.path + "/f", Array("the old content, 28 bytes...".utf8), flags: O_WRONLY | O_CREAT | O_TRUNC)
            #expect(close(fd0) == 0)
            let new = (0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            let fd = try openAndWrite(a.path + "/f", new, flags: O_WRONLY | O_TRUNC)
            cluster.killMount(a)
            close(fd)
            let again = try cluster.mount("a")
            #expect(contents(again.path + "/f") == Self.summary(new))
        }
    }

    @Test("a dirty copy left by a failed close is never stored over a newer version: it is kept as a conflict")
    func staleDirtyCopyKeptAsConflict() throws {
        try withMounts(serverArguments: []) { cluster in
            let a = try cluster.mount("a", extraArguments: Self.soft)
            let b = try cluster.mount("b")
            #expect(try Files.write(a.path + "/g", "original") == 0)
            let fd = try openAndWrite(a.path + "/g", Array("stale copy from A".utf8), flags: O_WRONLY | O_TRUNC)
            cluster.killServer()
            #expect(close(fd) != 0)
            try cluster.startServer()
            #expect(try Files.write(b.path + "/g", "newer from B") == 0)
            cluster.unmount(a)
            let reader = try cluster.mount("reader", design: .nfs)
            #expect(Files.read(reader.path + "/g") == "newer from B", "B's version stands")

            let again = try cluster.mount("a")
            #expect(Files.read(again.path + "/g") == "newer from B")
            let listing = try shell("\(peach) fs conflicts --json '\(again.path)'")
            #expect(listing.status == 0)
            let conflicts = try JSONSerialization.jsonObject(with: Data(listing.output.utf8)) as? [[String: Any]] ?? []
            #expect(conflicts.count == 1)
            #expect(conflicts.first?["path"] as? String == "/g")
            let kept = conflicts.first?["file"] as? String ?? ""
            #expect(Files.read(kept) == "stale copy from A", "the kept copy holds A's bytes")
            #expect(Files.counter(try Files.stats(again), "conflicts") == 1)
            let text = try shell("\(peach) fs conflicts '\(again.path)'")
            #expect(text.status == 0 && text.output.contains("/g") && text.output.contains(kept))
        }
    }
}

/// A server whose disk is full: content fills it only up to a reserve, so files can still be
/// removed; filled to the last byte from outside, every change fails with ENOSPC, not EIO.
@Suite("Real FUSE mounts: a full server disk", .serialized,
       .enabled(if: MountSupport.unavailableReason == nil && getuid() == 0, "needs FUSE and root (a tmpfs mount)"))
struct FullDiskMountTests {
    @Test("a full server disk: ENOSPC for every change, removals still work, nothing is lost", arguments: ClientDesign.allCases)
    func fullDisk(design: ClientDesign) throws {
        let small = try TemporaryDirectory(prefix: "peach-full")
        defer { small.remove() }
        let root = small.path + "/root"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        guard try shell("mount -t tmpfs -o size=4m tmpfs '\(root)'").status == 0 else {
            Issue.record("cannot mount a tmpfs")
            return
        }
        defer { _ = try? shell("umount -l '\(root)'") }
        try withMounts(serverArguments: [], serverRoot: root) { cluster in
            let mount = try cluster.mount("m", design: design)
            #expect(mkdir(mount.path + "/d", 0o755) == 0)
            #expect(try Files.write(mount.path + "/d/kept", "written before the disk filled") == 0)
            // File content fills the disk up to the reserve: the close that does not fit gets ENOSPC.
            let chunk = String(repeating: "x", count: 256 << 10)
            var filled = 0
            var failure: Int32 = 0
            while filled < 64 {
                failure = try Files.write(mount.path + "/fill\(filled)", chunk)
                if failure != 0 { break }
                filled += 1
            }
            #expect(filled < 64 && failure == ENOSPC, "content stopped at the reserve with ENOSPC (got \(failure))")
            // The reserve keeps metadata changes working: a file can be removed to make room.
            #expect(unlink(mount.path + "/fill0") == 0)
            #expect(mkdir(mount.path + "/made-in-the-reserve", 0o755) == 0)

            // Filled to the last byte from outside: every change fails with ENOSPC.
            _ = try shell("dd if=/dev/zero of='\(root)/filler' bs=4k 2>/dev/null")
            #expect(mkdir(mount.path + "/e", 0o755) == -1 && errno == ENOSPC)
            let fd = open(mount.path + "/new", O_WRONLY | O_CREAT, 0o644)
            #expect(fd == -1 && errno == ENOSPC)
            if fd >= 0 { close(fd) }
            #expect(rename(mount.path + "/d/kept", mount.path + "/moved") == -1 && errno == ENOSPC)
            #expect(symlink("target", mount.path + "/s") == -1 && errno == ENOSPC)
            #expect(link(mount.path + "/d/kept", mount.path + "/hard") == -1 && errno == ENOSPC)

            // Room again: everything works, and nothing was lost.
            unlink(root + "/filler")
            for i in 1..<filled { #expect(unlink(mount.path + "/fill\(i)") == 0) }
            #expect(Files.read(mount.path + "/d/kept") == "written before the disk filled")
            #expect(mkdir(mount.path + "/e", 0o755) == 0)
            #expect(rename(mount.path + "/d/kept", mount.path + "/moved") == 0)
            #expect(Files.read(mount.path + "/moved") == "written before the disk filled")
        }
    }
}

/// Names replaced by another client's rename while this mount holds the old object: a name
/// that exists never gets ESTALE (issue 9 counted 66 in 9147 operations on AFS mounts, 126 on
/// an NFS mount), and a descriptor on the old object keeps working where the design allows.
@Suite("Real FUSE mounts: renames over names in use", .serialized,
       .enabled(if: MountSupport.unavailableReason == nil, "\(MountSupport.unavailableReason ?? "")"))
struct RenameRaceMountTests {
    @Test("an open of a name another client renamed a new file over opens the new file", arguments: ClientDesign.allCases)
    func openAfterReplacement(design: ClientDesign) throws {
        try withMounts { cluster in
            let writer = try cluster.mount("writer", design: .afs)
            let reader = try cluster.mount("reader", design: design)
            #expect(try Files.write(writer.path + "/name", "old") == 0)
            // The reader learns name -> the old file; an NFS-style mount trusts that for a while.
            #expect(Files.read(reader.path + "/name") == "old")
            for round in 0..<3 {
                #expect(try Files.write(writer.path + "/next", "new \(round)") == 0)
                #expect(rename(writer.path + "/next", writer.path + "/name") == 0)
                let fd = open(reader.path + "/name", O_RDONLY)
                #expect(fd >= 0, "open: \(String(cString: strerror(errno)))")
                guard fd >= 0 else { continue }
                var buffer = [UInt8](repeating: 0, count: 32)
                let n = read(fd, &buffer, buffer.count)
                #expect(n >= 0 && String(decoding: buffer[0..<max(0, n)], as: UTF8.self) == "new \(round)")
                close(fd)
            }
        }
    }
}

/// Callbacks are leases: a cache manager trusts them only while it hears from the server.
@Suite("Real FUSE mounts: leases", .serialized,
       .enabled(if: MountSupport.unavailableReason == nil, "\(MountSupport.unavailableReason ?? "")"))
struct LeaseMountTests {
    /// Reads `path` on another thread (the read may wait in the kernel), runs `unblock` a moment
    /// later, and returns what the read returned.
    func readWhile(_ path: String, unblock: () -> Void) -> String? {
        let seen = NIOLockedValueBox<String?>(nil)
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            seen.withLockedValue { $0 = Files.read(path) }
            done.signal()
        }
        usleep(250_000)
        unblock()
        #expect(done.wait(timeout: .now() + 30) == .success)
        return seen.withLockedValue { $0 }
    }

    @Test("a cache manager paused past its lease revalidates before serving an open: nothing stale after a close returned elsewhere")
    func pausedCacheManager() throws {
        try withMounts { cluster in
            let a = try cluster.mount("a")
            let b = try cluster.mount("b")
            for round in 1...2 {
                #expect(try Files.write(a.path + "/f", "old \(round)") == 0)
                #expect(Files.read(a.path + "/f") == "old \(round)")
                cluster.signal(a, SIGSTOP)
                var resumed = false
                defer { if !resumed { cluster.signal(a, SIGCONT) } }
                // B's close returns once A is declared unreachable.
                #expect(try Files.write(b.path + "/f", "new \(round)") == 0)
                // An open on A while it is stopped: it waits in the kernel until A resumes.
                let seen = readWhile(a.path + "/f") {
                    cluster.signal(a, SIGCONT)
                    resumed = true
                }
                #expect(seen == "new \(round)")
            }
        }
    }

    @Test("a cache manager cut off from the server's replies stops trusting its callbacks after its lease")
    func cutOffCacheManager() throws {
        try withMounts { cluster in
            let proxy = try TCPProxy(targetPort: cluster.port)
            defer { proxy.stop() }
            let a = try cluster.mount("a", through: proxy)
            let b = try cluster.mount("b")
            #expect(try Files.write(a.path + "/f", "old") == 0)
            #expect(Files.read(a.path + "/f") == "old")
            // A's requests and pings still reach the server; nothing comes back, no break either.
            proxy.holdReplies()
            #expect(try Files.write(b.path + "/f", "new") == 0)
            // B's close has returned, so A may not serve "old" any more. It asks the server,
            // whose answer comes once the replies flow again.
            #expect(readWhile(a.path + "/f") { proxy.release() } == "new")
        }
    }
}

/// Hard and soft mounts: what a server that goes away, or hangs, does to applications (issue 9).
@Suite("Real FUSE mounts: a server that goes away", .serialized,
       .enabled(if: MountSupport.unavailableReason == nil, "\(MountSupport.unavailableReason ?? "")"))
struct ServerAwayMountTests {
    /// A tree of files of many sizes, the same every run.
    func makeTree(_ root: String) throws {
        var random = SplitMix64(seed: 7)
        for d in 0..<10 {
            let directory = root + "/dir\(d)/sub"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            for f in 0..<40 {
                let size = Int(random.next() % 40_000)
                let bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ f &+ d) }
                let path = (f % 2 == 0 ? root + "/dir\(d)" : directory) + "/file\(f).h"
                #expect(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
            }
        }
    }

    @Test("a hard mount rides out a server killed and restarted during cp -a: cp succeeds, every file identical",
          arguments: ClientDesign.allCases)
    func serverRestartDuringCopy(design: ClientDesign) throws {
        try withMounts(serverArguments: []) { cluster in
            let source = try cluster.directory.subdirectory("source")
            try makeTree(source)
            let mount = try cluster.mount("m", design: design)
            let log = cluster.directory.path + "/cp.log"
            let fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            let copy = try ChildProcess(["cp", "-a", source, mount.path + "/copy"], outputFD: fd)
            close(fd)
            // Whatever fails below, cp does not outlive the test.
            defer {
                copy.signal(SIGKILL)
                copy.wait()
            }
            usleep(300_000)
            #expect(copy.isRunning, "the server must die during the copy")
            cluster.killServer()
            usleep(1_000_000)
            try cluster.startServer()
            let status = copy.wait()
            #expect(status == 0, "cp: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
            let reader = try cluster.mount("reader", design: .nfs)
            let diff = try shell("diff -r '\(source)' '\(reader.path)/copy'")
            #expect(diff.status == 0, "\(diff.output.prefix(2000))")
        }
    }

    @Test("a connection cut in the middle of a store's upload is retried: on a hard mount close(2) succeeds, the file whole")
    func uploadCutMidway() throws {
        try withMounts { cluster in
            let proxy = try TCPProxy(targetPort: cluster.port)
            defer { proxy.stop() }
            let a = try cluster.mount("a", through: proxy)
            let b = try cluster.mount("b")
            try shell("head -c 33554432 /dev/urandom > '\(cluster.directory.path)/source'")
            let fd = open(a.path + "/f", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            try #require(fd >= 0)
            var closed: Int32?
            // Whatever fails below, the descriptor does not keep the mount busy.
            defer { if closed == nil { close(fd) } }
            let content = try Data(contentsOf: URL(fileURLWithPath: cluster.directory.path + "/source"))
            try FileHandle(fileDescriptor: fd, closeOnDealloc: false).write(contentsOf: content)
            // The store at close sends 32 MiB; the connection drops after 4 MiB of it.
            proxy.dropConnection(afterForwarding: 4 << 20)
            closed = close(fd)
            let closeErrno = errno
            #expect(closed == 0, "close: \(String(cString: strerror(closeErrno)))")
            // Sent twice: cut, then whole on a new connection.
            let rpcs = try Files.stats(a)["rpcs"] as? [String: Int]
            #expect(rpcs?["StoreData"] == 2, "\(rpcs ?? [:])")
            let sums = try shell("sha256sum < '\(cluster.directory.path)/source'; sha256sum < '\(b.path)/f'").output
                .split(separator: "\n")
            #expect(sums.count == 2 && sums[0] == sums[1], "\(sums)")
        }
    }

    @Test("a soft mount fails a request the hung server does not answer with ETIMEDOUT; unmounting does not wait for it")
    func hungServer() throws {
        try withMounts(serverArguments: []) { cluster in
            let mount = try cluster.mount("m", design: .afs, extraArguments: ["--soft", "--timeout", "1"])
            #expect(try Files.write(mount.path + "/f", "cached") == 0)
            cluster.serverProcess!.signal(SIGSTOP)
            defer { cluster.serverProcess!.signal(SIGCONT) }
            // Past the lease, the file must be revalidated, and the server does not answer.
            usleep(3_000_000)
            let fd = open(mount.path + "/f", O_RDONLY)
            #expect(fd == -1 && errno == ETIMEDOUT)
            if fd >= 0 { close(fd) }
            // Unmounting: fusermount3 returns, and the cache manager exits, without the server.
            let started = Date()
            cluster.unmount(mount)
            #expect(Date().timeIntervalSince(started) < 10, "unmounting took \(Date().timeIntervalSince(started)) s")
        }
    }

    @Test("on a hard mount, a program waiting for a server that is down waits, and Ctrl-C still ends it")
    func interruptibleWait() throws {
        try withMounts(serverArguments: []) { cluster in
            let mount = try cluster.mount("m", design: .afs)
            #expect(try Files.write(mount.path + "/f", "cached") == 0)
            cluster.killServer()
            // Past the lease, the open must ask the server, which is not there.
            usleep(3_000_000)
            let reader = try ChildProcess(["cat", mount.path + "/f"], outputFD: 2)
            usleep(1_000_000)
            #expect(reader.isRunning, "a hard mount waits for the server")
            reader.signal(SIGINT)
            var waited = 0
            while reader.isRunning && waited < 100 {
                usleep(100_000)
                waited += 1
            }
            #expect(!reader.isRunning, "Ctrl-C ended the wait")
            if reader.isRunning { reader.signal(SIGKILL) }
            reader.wait()
            // And once the server is back, the mount carries on.
            try cluster.startServer()
            #expect(Files.read(mount.path + "/f") == "cached")
        }
    }

    @Test("a hard mount serves stat, ls and cat of files cached under a fresh lease while the server is dead; a change after its restart is seen at the next open")
    func servesCachedFilesThroughAnOutage() throws {
        // --callback-timeout 20: a lease of 10 s, so that the steps below fit well inside it.
        try withMounts(serverArguments: ["--callback-timeout", "20"]) { cluster in
            let a = try cluster.mount("a", design: .afs)
            try FileManager.default.createDirectory(atPath: a.path + "/d", withIntermediateDirectories: true)
            #expect(try Files.write(a.path + "/d/g", "before the outage") == 0)
            #expect(Files.read(a.path + "/d/g") == "before the outage")
            _ = try FileManager.default.contentsOfDirectory(atPath: a.path + "/d")
            cluster.killServer()
            usleep(500_000)
            // Each in a process of its own, killed after 2 s: one that waited for the server (the
            // old behaviour) would hang the test otherwise. Served from the cache, each answers
            // with no server at all.
            let expected = ["stat -c %s '\(a.path)/d/g'": "17\n", "ls '\(a.path)/d'": "g\n", "cat '\(a.path)/d/g'": "before the outage"]
            for (command, output) in expected {
                let result = try shell("timeout -s KILL 2 " + command)
                #expect(result.status == 0 && result.output == output, "\(command) while the server is dead: \(result.output)")
            }
            try cluster.startServer()
            let b = try cluster.mount("b", design: .afs)
            #expect(try Files.write(b.path + "/d/g", "after the restart") == 0)
            #expect(Files.read(a.path + "/d/g") == "after the restart")
        }
    }

    @Test("after a server restart, unchanged cached files are not fetched again, and cost at most a status request each")
    func restartRevalidatesWithoutRefetch() throws {
        try withMounts(serverArguments: []) { cluster in
            let mount = try cluster.mount("m", design: .afs)
            for i in 0..<5 { #expect(try Files.write(mount.path + "/f\(i)", "content \(i)") == 0) }
            let before = try Files.stats(mount)
            cluster.killServer()
            try cluster.startServer()
            for i in 0..<5 { #expect(Files.read(mount.path + "/f\(i)") == "content \(i)") }
            let after = try Files.stats(mount)
            #expect(Files.counter(after, "fetches") == Files.counter(before, "fetches"), "nothing fetched again")
            let rpcs = after["rpcs"] as? [String: Int] ?? [:]
            let earlier = before["rpcs"] as? [String: Int] ?? [:]
            let statuses = (rpcs["FetchStatus", default: 0] - earlier["FetchStatus", default: 0])
                + (rpcs["BulkStatus", default: 0] - earlier["BulkStatus", default: 0])
            // None at all when the mount came back within its lease: the server's callback table
            // survived, and nothing was broken meanwhile (docs/consistency.md).
            #expect(statuses <= 6, "one status request per file at most (and the directory): \(statuses)")
        }
    }

    @Test("--offline-reads: while the server is away, cached files are read, read-only, and fs stats says so")
    func offlineReads() throws {
        try withMounts(serverArguments: []) { cluster in
            let mount = try cluster.mount("m", design: .afs, extraArguments: ["--offline-reads"])
            try FileManager.default.createDirectory(atPath: mount.path + "/d", withIntermediateDirectories: true)
            for i in 0..<3 { #expect(try Files.write(mount.path + "/d/f\(i)", "cached \(i)") == 0) }
            // What is used before the server goes: the directories' listings come into the cache.
            _ = try FileManager.default.contentsOfDirectory(atPath: mount.path)
            _ = try FileManager.default.contentsOfDirectory(atPath: mount.path + "/d")
            cluster.killServer()
            usleep(3_500_000)  // past the lease
            for i in 0..<3 { #expect(Files.read(mount.path + "/d/f\(i)") == "cached \(i)") }
            #expect(try FileManager.default.contentsOfDirectory(atPath: mount.path + "/d").sorted() == ["f0", "f1", "f2"])
            let write = open(mount.path + "/d/f0", O_WRONLY)
            #expect(write == -1 && errno == EROFS)
            if write >= 0 { close(write) }
            let stats = try Files.stats(mount)
            #expect(stats["serverReachable"] as? Bool == false)
            #expect(Files.counter(stats, "offlineOpens") >= 3)
            // Back: writes work again, and the mount says the server is reachable.
            try cluster.startServer()
            var written: Int32 = -1
            for _ in 0..<50 where written != 0 {
                written = try Files.write(mount.path + "/d/f0", "after")
                if written != 0 { usleep(200_000) }
            }
            #expect(written == 0)
            #expect(try Files.stats(mount)["serverReachable"] as? Bool == true)
        }
    }
}
