import Foundation
import PeachLocalCluster
import PeachSupport
import PeachTesting
import Testing

/// Helpers for tests that make real system calls on a mount.
enum Files {
    static func write(_ path: String, _ text: String, flags: Int32 = O_WRONLY | O_CREAT | O_TRUNC) throws -> Int32 {
        let fd = open(path, flags | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return errno }
        let bytes = Array(text.utf8)
        guard Foundation.write(fd, bytes, bytes.count) == bytes.count else { let e = errno; close(fd); return e }
        return close(fd) == 0 ? 0 : errno
    }

    static func read(_ path: String) -> String? {
        (try? Data(contentsOf: URL(fileURLWithPath: path))).map { String(decoding: $0, as: UTF8.self) }
    }

    static func size(_ path: String) -> Int? {
        var st = stat()
        return stat(path, &st) == 0 ? Int(st.st_size) : nil
    }

    static func stats(_ mount: MountedCluster.Mount) throws -> [String: Any] {
        let result = try shell("'\(MountSupport.peachBinary)' fs stats --json '\(mount.path)'")
        guard result.status == 0, let object = try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any] else {
            throw MountError(description: "fs stats failed: \(result.output)")
        }
        return object
    }

    static func counter(_ stats: [String: Any], _ key: String) -> Int { stats[key] as? Int ?? -1 }
}

@Suite("Real FUSE mounts: two cache managers on one server", .serialized,
       .enabled(if: MountSupport.unavailableReason == nil, "\(MountSupport.unavailableReason ?? "")"))
struct MountTests {
    @Test("a close on mount A is seen by the next open on mount B; an earlier descriptor keeps the old content")
    func twoMounts() throws {
        try withMounts { cluster in
            let a = try cluster.mount("a")
            let b = try cluster.mount("b")
            #expect(try Files.write(a.path + "/f", "first version") == 0)
            #expect(Files.read(b.path + "/f") == "first version")
            let held = open(b.path + "/f", O_RDONLY)
            defer { close(held) }
            #expect(try Files.write(a.path + "/f", "second") == 0)
            var buffer = [UInt8](repeating: 0, count: 64)
            let n = pread(held, &buffer, 64, 0)
            #expect(String(decoding: buffer[0..<max(0, n)], as: UTF8.self) == "first version")
            // (Descriptors of one inode share the kernel's page cache: read the old one first.)
            #expect(Files.read(b.path + "/f") == "second")
            let stats = try Files.stats(b)
            #expect(stats["mode"] as? String == "afs")
            #expect(Files.counter(stats, "callbacksReceived") >= 1)
            for key in ["opens", "openHits", "reads", "readBytes", "readHitBytes", "fetches", "fetchedBytes", "stores",
                        "storedBytes", "evictions", "cacheBytes", "serverRequests"] {
                #expect(stats[key] is Int, "stats has \(key)")
            }
            #expect(stats["rpcs"] is [String: Int])
        }
    }

    @Test("a re-read under a valid callback is served by the kernel page cache: no request reaches the cache manager")
    func pageCacheReRead() throws {
        try withMounts { cluster in
            let a = try cluster.mount("a")
            let content = String(repeating: "0123456789abcdef", count: 65536)
            #expect(try Files.write(a.path + "/big", content) == 0)
            _ = Files.read(a.path + "/big")
            let before = try Files.stats(a)
            #expect(Files.read(a.path + "/big") == content)
            let after = try Files.stats(a)
            #expect(Files.counter(after, "serverRequests") == Files.counter(before, "serverRequests"))
            #expect(Files.counter(after, "reads") == Files.counter(before, "reads"), "the kernel served the pages")
            #expect(Files.counter(after, "openHits") == Files.counter(before, "openHits") + 1)
        }
    }

    @Test("a break invalidates the kernel's cached attributes on the other mount")
    func breakInvalidatesKernelAttributes() throws {
        try withMounts { cluster in
            let a = try cluster.mount("a")
            let b = try cluster.mount("b")
            #expect(try Files.write(a.path + "/f", "12345") == 0)
            #expect(Files.size(b.path + "/f") == 5)
            #expect(try Files.write(a.path + "/f", "1234567890") == 0)
            #expect(Files.size(b.path + "/f") == 10)
        }
    }

    @Test("negative control: with kernel invalidation off, the other mount's stat stays stale")
    func withoutInvalidationAttributesStayStale() throws {
        try withMounts { cluster in
            let a = try cluster.mount("a")
            let b = try cluster.mount("b", environment: ["PEACH_NO_KERNEL_INVALIDATION": "1"])
            #expect(try Files.write(a.path + "/f", "12345") == 0)
            #expect(Files.size(b.path + "/f") == 5)
            #expect(try Files.write(a.path + "/f", "1234567890") == 0)
            #expect(Files.size(b.path + "/f") == 5, "the kernel kept its cached attributes")
            // The cache manager has the new content, but the kernel cuts reads at its stale size.
            #expect(Files.read(b.path + "/f") == "12345")
        }
    }

    @Test("a store that fails reaches close(2), and the dirty copy is kept and stored later")
    func failedStoreReachesClose() throws {
        try withMounts { cluster in
            let a = try cluster.mount("a", extraArguments: ["--soft", "--timeout", "1"])
            let b = try cluster.mount("b")
            #expect(try Files.write(a.path + "/f", "saved") == 0)
            // Written while the server is up, closed while it is down.
            let fd = open(a.path + "/f", O_WRONLY | O_TRUNC)
            #expect(fd >= 0)
            #expect(Foundation.write(fd, "precious", 8) == 8)
            cluster.stopServer()
            let closed = close(fd)
            let closeErrno = errno
            #expect(closed == -1 && closeErrno == ETIMEDOUT, "a soft mount gives up after its timeout: \(closed), \(String(cString: strerror(closeErrno)))")
            try cluster.startServer()
            #expect(Files.read(a.path + "/f") == "precious", "the local copy was kept")
            let flush = try shell("'\(MountSupport.peachBinary)' fs flush '\(a.path)/f'")
            #expect(flush.status == 0, "\(flush.output)")
            #expect(Files.read(b.path + "/f") == "precious")
        }
    }

    @Test("peach mount fails with one clear line and leaves nothing mounted")
    func mountFailures() throws {
        try withMounts { cluster in
            let peach = "'\(MountSupport.peachBinary)'"
            let missing = try shell("\(peach) mount \(cluster.directory.path)/nope --server \(cluster.address) --cache \(cluster.directory.path)/c1")
            #expect(missing.status != 0)
            #expect(missing.output.contains("does not exist"))
            let target = try cluster.directory.subdirectory("target")
            let unreachable = try shell("\(peach) mount \(target) --server 127.0.0.1:1 --cache \(cluster.directory.path)/c2")
            #expect(unreachable.status != 0)
            #expect(unreachable.output.contains("cannot reach the file server"))
            #expect(!MountedCluster.isMounted(target))
            let a = try cluster.mount("a")
            let again = try shell("\(peach) mount \(a.path) --server \(cluster.address) --cache \(cluster.directory.path)/c3")
            #expect(again.status != 0)
            #expect(again.output.contains("already mounted"))
        }
    }

    @Test("peach mount in the background returns once the mount answers; a second one on its cache is refused without touching its log; unmount stops it")
    func backgroundMount() throws {
        try withMounts { cluster in
            let target = try cluster.directory.subdirectory("bg")
            let result = try shell("'\(MountSupport.peachBinary)' mount \(target) --server \(cluster.address) --cache \(cluster.directory.path)/bg-cache")
            #expect(result.status == 0, "\(result.output)")
            defer { _ = try? shell("fusermount3 -u \(target) || fusermount3 -uz \(target)") }
            #expect(MountedCluster.isMounted(target))
            #expect(try Files.write(target + "/x", "y") == 0)
            // A second mount on the same cache is refused, and the live mount's log is left as it was.
            let log = cluster.directory.path + "/bg-cache/peach-mount.log"
            let logBefore = try String(contentsOfFile: log, encoding: .utf8)
            let second = try cluster.directory.subdirectory("bg-second")
            let refused = try shell("'\(MountSupport.peachBinary)' mount \(second) --server \(cluster.address) --cache \(cluster.directory.path)/bg-cache")
            #expect(refused.status != 0)
            #expect(refused.output.contains("in use by another peach process"), "\(refused.output)")
            #expect(try String(contentsOfFile: log, encoding: .utf8) == logBefore)
            #expect(!MountedCluster.isMounted(second))
            let pids = try shell("pgrep -f 'peach mount \(target)'").output.split(separator: "\n")
            #expect(try shell("fusermount3 -u \(target)").status == 0)
            for _ in 0..<100 where try shell("pgrep -f 'peach mount \(target)'").status == 0 { usleep(50_000) }
            #expect(try shell("pgrep -f 'peach mount \(target)'").status != 0, "daemon \(pids) exited after unmount")
        }
    }

    @Test("a server that cannot listen (its port taken) exits with one line and leaves no new volume behind")
    func serverOnATakenPort() throws {
        try withMounts { cluster in
            let root = cluster.directory.path + "/never-served"
            let result = try shell("'\(MountSupport.peachBinary)' server --root '\(root)' --listen \(cluster.address)")
            #expect(result.status != 0)
            #expect(result.output.contains("cannot listen on \(cluster.address)"), "\(result.output)")
            #expect(!FileManager.default.fileExists(atPath: root))
        }
    }

    @Test("peach server raises its soft descriptor limit to the hard one, and fits --max-clients to it with a warning")
    func descriptorLimit() throws {
        let directory = try TemporaryDirectory(prefix: "peach-nofile")
        defer { directory.remove() }
        let log = directory.path + "/server.log"
        let script = """
            prlimit --nofile=100:200 '\(MountSupport.peachBinary)' server --root '\(directory.path)/root' --listen 127.0.0.1:0 >'\(log)' 2>&1 &
            pid=$!
            for i in $(seq 200); do grep -q 'serving' '\(log)' && break; sleep 0.05; done
            grep 'open files' /proc/$pid/limits
            kill $pid; wait $pid
            """
        let result = try shell(script)
        let limits = result.output.split(separator: "\n").first { $0.hasPrefix("Max open files") }?.split(separator: " ") ?? []
        #expect(limits.count >= 5 && limits[3] == "200" && limits[4] == "200", "\(result.output)")
        let text = try String(contentsOfFile: log, encoding: .utf8)
        // (200 - 64 reserved) / 3 per client
        #expect(text.contains("--max-clients lowered") && text.contains("maxClients=45"), "\(text)")
    }

    @Test("a file larger than the whole cache is read through without caching it, with a log note; reads stay exact after another mount's store")
    func readThroughLargerThanTheCache() throws {
        try withMounts { cluster in
            let writer = try cluster.mount("writer", design: .afs)
            let small = try cluster.mount("small", design: .afs, extraArguments: ["--cache-size", "1M", "--log-level", "info"])
            let big = (0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 11) }
            try Data(big).write(to: URL(fileURLWithPath: writer.path + "/big"))
            // Before, the fetch into a 1 MiB cache failed with ENOSPC.
            #expect(try Data(contentsOf: URL(fileURLWithPath: small.path + "/big")) == Data(big))
            let stats = try peachJSON("fs stats '\(small.path)'")
            #expect(Files.counter(stats, "readThroughOpens") == 1, "\(stats)")
            let parameters = try peachJSON("fs getcacheparms '\(small.path)'")
            #expect((parameters["usedBytes"] as? Int ?? .max) <= 1 << 20, "\(parameters)")
            #expect(try String(contentsOfFile: small.log, encoding: .utf8).contains("larger than the cache"))
            // Another mount stores a new version: the next read-through open reads it.
            var changed = big
            changed[1 << 20] ^= 0xff
            try Data(changed).write(to: URL(fileURLWithPath: writer.path + "/big"))
            #expect(try Data(contentsOf: URL(fileURLWithPath: small.path + "/big")) == Data(changed))
            #expect(Files.counter(try peachJSON("fs stats '\(small.path)'"), "readThroughOpens") == 2)
        }
    }
}
