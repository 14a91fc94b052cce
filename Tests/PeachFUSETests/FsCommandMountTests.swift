import Foundation
import PeachLocalCluster
import PeachSupport
import PeachTesting
import Testing

/// The `peach fs` suite against real mounts: each subcommand's text and JSON (issue 10).
@Suite("Real FUSE mounts: the peach fs suite", .serialized,
       .enabled(if: MountSupport.unavailableReason == nil, "\(MountSupport.unavailableReason ?? "")"))
struct FsCommandMountTests {
    let peach = "'\(MountSupport.peachBinary)'"

    /// A process of its own that opens `path` with O_TRUNC, writes `text`, and keeps it open (and
    /// dirty) until killed. Not a descriptor of this process: a child spawned from here would
    /// close its copy at exec, and the kernel turns every close into a FLUSH, which stores.
    func holdDirty(_ path: String, _ text: String, log: String) throws -> ChildProcess {
        let script = "import os, time; fd = os.open('\(path)', os.O_WRONLY | os.O_TRUNC); os.write(fd, b'\(text)'); "
            + "open('\(log).ready', 'w').close(); time.sleep(120)"
        let fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        defer { close(fd) }
        let child = try ChildProcess(["python3", "-c", script], outputFD: fd)
        for _ in 0..<200 where !FileManager.default.fileExists(atPath: log + ".ready") { usleep(25_000) }
        return child
    }

    /// `peach fs ARGUMENTS --json` decoded.
    func json(_ arguments: String) throws -> [String: Any] { try peachJSON("fs " + arguments) }

    @Test("stats prints hit rates as percentages, and JSON with --json; getcacheparms and whereis say where things are")
    func statsCacheParmsWhereIs() throws {
        try withMounts { cluster in
            let a = try cluster.mount("a", design: .afs)
            for (name, size) in [("x", 1000), ("y", 2000), ("z", 3000)] {
                #expect(FileManager.default.createFile(atPath: a.path + "/" + name, contents: Data(count: size)))
            }
            _ = Files.read(a.path + "/x")  // an open under the callback: a hit
            let text = try shell("\(peach) fs stats '\(a.path)'")
            #expect(text.status == 0)
            #expect(text.output.contains("open hit rate"))
            #expect(text.output.contains("%"))
            #expect(Files.counter(try json("stats '\(a.path)'"), "openHits") == 1)

            let parameters = try json("getcacheparms '\(a.path)'")
            #expect(parameters["usedBytes"] as? Int == 6000)
            #expect(parameters["files"] as? Int == 3)
            #expect(parameters["limitBytes"] as? Int == 2 << 30)
            #expect(try shell("\(peach) fs getcacheparms '\(a.path)'").output.contains("in 3 files"))

            #expect(try json("whereis '\(a.path)'")["fid"] as? String == "1.1.1")
            let location = try json("whereis '\(a.path)/y'")
            #expect(location["server"] as? String == cluster.address)
            let callbacks = try json("callbacks '\(a.path)'")["callbacks"] as? [[String: Any]] ?? []
            #expect(callbacks.contains { $0["path"] as? String == "/y" && $0["fid"] as? String == location["fid"] as? String })
            #expect(try shell("\(peach) fs whereis /tmp").status != 0)
            // Mounted again on the same cache: reading x takes promises on its siblings too (one
            // BulkStatus), before anyone looks them up; they are listed by the path they were
            // cached under.
            cluster.unmount(a)
            let again = try cluster.mount("a2", design: .afs, cache: a.cache)
            _ = Files.read(again.path + "/x")
            let remounted = try json("callbacks '\(again.path)'")["callbacks"] as? [[String: Any]] ?? []
            let paths = Set(remounted.compactMap { $0["path"] as? String })
            #expect(paths.isSuperset(of: ["/x", "/y", "/z"]), "\(remounted)")
            #expect(!(try shell("\(peach) fs callbacks '\(again.path)'").output.contains("path unknown")))
        }
    }

    @Test("sync stores a file another process holds open and written, so another mount reads it before the close")
    func syncStoresOpenDirtyFiles() throws {
        try withMounts { cluster in
            let a = try cluster.mount("a", design: .afs)
            let b = try cluster.mount("b", design: .afs)
            #expect(try Files.write(a.path + "/f", "old") == 0)
            let writer = try holdDirty(a.path + "/f", "synced", log: cluster.directory.path + "/writer.log")
            defer {
                writer.signal(SIGKILL)
                writer.wait()
            }
            #expect(Files.read(b.path + "/f") == "old")  // not stored yet
            let result = try shell("\(peach) fs sync '\(a.path)'")
            #expect(result.status == 0)
            #expect(result.output.contains("stored 1 dirty files"))
            #expect(Files.read(b.path + "/f") == "synced")
        }
    }

    @Test("sync fails, naming the files, when the server cannot take them")
    func syncFailureListsFiles() throws {
        // A 4 KiB quota: the 10 KB the writer holds cannot be stored.
        try withMounts(serverArguments: ["--quota", "4K"]) { cluster in
            let a = try cluster.mount("a", design: .afs)
            #expect(try Files.write(a.path + "/kept", "v1") == 0)
            let writer = try holdDirty(a.path + "/kept", String(repeating: "v2", count: 5000), log: cluster.directory.path + "/writer.log")
            defer {
                writer.signal(SIGKILL)
                writer.wait()
            }
            let result = try shell("\(peach) fs sync '\(a.path)' 2>&1")
            #expect(result.status != 0)
            #expect(result.output.contains("1 dirty files could not be stored"))
            #expect(result.output.contains("/kept"))
        }
    }

    @Test("flushall drops every cached copy but those of open files; warmup fetches a tree so its opens are hits")
    func flushAllAndWarmup() throws {
        try withMounts { cluster in
            let a = try cluster.mount("a", design: .afs)
            let b = try cluster.mount("b", design: .afs)
            try FileManager.default.createDirectory(atPath: b.path + "/tree/sub", withIntermediateDirectories: true)
            for name in ["one", "two", "sub/three", "sub/four"] { #expect(try Files.write(b.path + "/tree/" + name, name) == 0) }

            let warmup = try shell("\(peach) fs warmup '\(a.path)/tree'")
            #expect(warmup.status == 0)
            #expect(warmup.output.contains("warmed 4 files"))
            #expect(try json("getcacheparms '\(a.path)'")["files"] as? Int == 4)
            let before = try Files.stats(a)
            for name in ["one", "two", "sub/three", "sub/four"] { #expect(Files.read(a.path + "/tree/" + name) == name) }
            let after = try Files.stats(a)
            #expect(Files.counter(after, "openHits") - Files.counter(before, "openHits") == 4)
            #expect(Files.counter(after, "fetches") == Files.counter(before, "fetches"))

            let fd = open(a.path + "/tree/one", O_RDONLY | O_CLOEXEC)
            #expect(fd >= 0)
            defer { close(fd) }
            let report = try json("flushall '\(a.path)'")
            #expect(report["keptOpen"] as? Int == 1)
            #expect((report["dropped"] as? Int ?? 0) >= 3)
            #expect(try json("getcacheparms '\(a.path)'")["files"] as? Int == 1)
            #expect(Files.read(a.path + "/tree/two") == "two")  // fetched again
        }
    }

    @Test("setcachesize changes the limit at once: an AFS mount evicts clean copies to fit, an NFS mount its blocks; only root may")
    func setCacheSize() throws {
        try withMounts { cluster in
            let a = try cluster.mount("a", design: .afs, extraArguments: ["--allow-other"])
            let n = try cluster.mount("n", design: .nfs)
            try shell("for i in 1 2 3 4; do head -c 1048576 /dev/urandom > '\(a.path)/f'$i; done")
            #expect(try json("getcacheparms '\(a.path)'")["usedBytes"] as? Int == 4 << 20)
            let text = try shell("\(peach) fs setcachesize '\(a.path)' 2M")
            #expect(text.status == 0, "\(text.output)")
            #expect(text.output.contains("cache limit now 2.0 MiB"))
            let parameters = try json("getcacheparms '\(a.path)'")
            #expect(parameters["limitBytes"] as? Int == 2 << 20)
            #expect((parameters["usedBytes"] as? Int ?? .max) <= 2 << 20)
            #expect(Files.counter(try json("stats '\(a.path)'"), "evictions") >= 2)
            #expect(try shell("cat '\(a.path)'/f1 '\(a.path)'/f2 '\(a.path)'/f3 '\(a.path)'/f4 | wc -c").output == "4194304\n")
            #expect((try json("getcacheparms '\(a.path)'")["usedBytes"] as? Int ?? .max) <= 2 << 20)

            _ = try shell("cat '\(n.path)'/f1 '\(n.path)'/f2 '\(n.path)'/f3 > /dev/null")
            #expect((try json("getcacheparms '\(n.path)'")["usedBytes"] as? Int ?? 0) > 2 << 20)
            #expect(try shell("\(peach) fs setcachesize '\(n.path)' 1M").status == 0)
            let nfs = try json("getcacheparms '\(n.path)'")
            #expect(nfs["limitBytes"] as? Int == 1 << 20)
            #expect((nfs["usedBytes"] as? Int ?? .max) <= 1 << 20)

            // On a directory of its own (setting a user.* attribute needs write permission), from
            // inside the mount (the test's directories above it are closed to uid 1000).
            try shell("mkdir '\(a.path)/home' && chown 1000:1000 '\(a.path)/home'")
            let asUser = try shell("cd '\(a.path)/home' && setpriv --reuid=1000 --regid=1000 --clear-groups \(peach) fs setcachesize . 8M")
            // Refused: by the kernel (the mount root's user.* attributes need write permission) or
            // by the cache manager (root only).
            #expect(asUser.status != 0 && (asUser.output.contains("not permitted") || asUser.output.contains("Permission denied")),
                    "\(asUser.output)")
            #expect(try json("getcacheparms '\(a.path)'")["limitBytes"] as? Int == 2 << 20)
            #expect(try shell("\(peach) fs setcachesize '\(a.path)' 10K").output.contains("at least 1M"))
            #expect(try shell("\(peach) fs setcachesize /tmp 8M").output.contains("not in a PeachFS mount"))
        }
    }

    @Test("checkservers reports the server up with its round trip, unreachable since when while it is down, and up again")
    func checkServers() throws {
        try withMounts { cluster in
            let a = try cluster.mount("a", design: .afs, extraArguments: ["--soft", "--timeout", "2"])
            let hard = try cluster.mount("hard", design: .nfs)
            let up = try json("checkservers '\(a.path)'")
            #expect(up["reachable"] as? Bool == true)
            #expect((up["roundTripMilliseconds"] as? Double ?? 0) > 0)
            #expect(up["server"] as? String == cluster.address)
            #expect(try shell("\(peach) fs checkservers '\(a.path)'").output.contains("is up (round trip"))

            try shell("mkdir '\(a.path)/sub'")
            #expect(try Files.write(a.path + "/kept", "old") == 0)
            let writer = try holdDirty(a.path + "/kept", "new", log: cluster.directory.path + "/writer.log")
            defer {
                writer.signal(SIGKILL)
                writer.wait()
            }
            cluster.stopServer()
            // A path below the root is fine too: the question goes to the mount root.
            let down = try shell("\(peach) fs checkservers '\(a.path)/sub'")
            #expect(down.status == 1)
            #expect(down.output.contains("is unreachable since"), "\(down.output)")
            let report = try JSONSerialization.jsonObject(with: Data(try shell("\(peach) fs checkservers --json '\(a.path)'").output.utf8))
                as? [String: Any] ?? [:]
            #expect(report["reachable"] as? Bool == false)
            #expect((report["unreachableSince"] as? Double ?? 0) > Date().timeIntervalSince1970 - 60)
            // A hard mount answers too: the question must not wait for the server.
            let fromHard = try shell("timeout 20 \(peach) fs checkservers '\(hard.path)/sub'")
            #expect(fromHard.status == 1, "\(fromHard.output) \((try? String(contentsOfFile: hard.log, encoding: .utf8)) ?? "")")
            #expect(fromHard.output.contains("is unreachable since"))
            // So do the other questions about the whole mount, asked of its root.
            for question in ["stats", "getcacheparms", "callbacks", "conflicts"] {
                let answer = try shell("timeout 20 \(peach) fs \(question) --json '\(hard.path)/sub'")
                #expect(answer.status == 0, "fs \(question) with the server down: \(answer.output)")
            }
            // A close while the server is down (the writer killed) leaves the file dirty; sync names it.
            writer.signal(SIGKILL)
            writer.wait()
            let sync = try shell("timeout 30 \(peach) fs sync --json '\(a.path)'")
            #expect(sync.status == 1)
            #expect(sync.output.contains("kept"), "\(sync.output)")

            try cluster.startServer()
            #expect(eventually(every: 0.2) { (try? shell("\(peach) fs checkservers '\(a.path)'"))?.status == 0 })
            #expect(try shell("grep -c 'file server unreachable' '\(a.log)'").output == "1\n")
            #expect(try shell("grep -c 'file server back' '\(a.log)'").output == "1\n")
        }
    }

    @Test("a file another mount removes leaves the disk cache at once, unless it is open here")
    func removedFilesLeaveTheCache() throws {
        try withMounts { cluster in
            let a = try cluster.mount("a", design: .afs)
            let b = try cluster.mount("b", design: .afs)
            try shell("head -c 1000000 /dev/urandom > '\(b.path)/gone' && head -c 1000 /dev/urandom > '\(b.path)/held'")
            _ = Files.read(a.path + "/gone")
            _ = Files.read(a.path + "/held")
            #expect(try json("getcacheparms '\(a.path)'")["usedBytes"] as? Int == 1_001_000)
            // Held open by a process of its own (this one closes its descriptor at once).
            let heldFD = open(a.path + "/held", O_RDONLY | O_CLOEXEC)
            let holder = try ChildProcess(["sleep", "30"], outputFD: heldFD)
            close(heldFD)
            defer {
                holder.signal(SIGKILL)
                holder.wait()
            }
            try shell("rm '\(b.path)/gone' '\(b.path)/held'")
            var used = 0
            let onlyTheOpenCopyLeft = try eventually {
                used = try json("getcacheparms '\(a.path)'")["usedBytes"] as? Int ?? -1
                return used == 1000
            }
            #expect(onlyTheOpenCopyLeft, "the open file's copy stays, the other goes: \(used) bytes")
        }
    }
}
