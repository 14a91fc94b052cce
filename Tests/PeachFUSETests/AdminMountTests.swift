import Foundation
import PeachLocalCluster
import PeachServer
import PeachSupport
import PeachTesting
import Testing

/// `peach admin` against a real server and real mounts (issue 10): who holds what, the
/// server's counters, who may ask, and a backup taken under load restored byte for byte.
@Suite("Real FUSE mounts: peach admin", .serialized,
       .enabled(if: MountSupport.unavailableReason == nil, "\(MountSupport.unavailableReason ?? "")"))
struct AdminMountTests {
    let peach = "'\(MountSupport.peachBinary)'"

    /// `peach admin ARGUMENTS --json` decoded.
    func json(_ arguments: String) throws -> [String: Any] { try peachJSON("admin " + arguments) }

    @Test("clients and callbacks show the promises two AFS mounts hold, by path and by client; stats counts the requests")
    func clientsCallBacksStats() throws {
        try withMounts { cluster in
            let a = try cluster.mount("a", design: .afs)
            let b = try cluster.mount("b", design: .afs)
            try shell("mkdir '\(a.path)/src' && echo one > '\(a.path)/src/f' && echo two > '\(a.path)/top'")
            #expect(Files.read(b.path + "/src/f") == "one\n")
            #expect(Files.read(b.path + "/top") == "two\n")
            #expect(try Files.write(a.path + "/src/f", "three\n") == 0)  // breaks b's promise on f
            #expect(Files.read(b.path + "/src/f") == "three\n")
            // A file a makes, b reads and a removes: the server keeps a's promise on the removed
            // file, which must not be counted.
            try shell("echo gone > '\(a.path)/src/gone' && cat '\(b.path)/src/gone' > /dev/null && rm '\(a.path)/src/gone'")

            let clients = try json("clients --server \(cluster.address)")["clients"] as? [[String: Any]] ?? []
            #expect(clients.count == 2)
            #expect(clients.allSatisfy { $0["reachable"] as? Bool == true && $0["design"] as? String == "afs" })
            #expect(clients.allSatisfy { ($0["callBacksHeld"] as? Int ?? 0) > 0 })
            #expect(clients.allSatisfy { ($0["name"] as? String ?? "").hasPrefix("localhost") })
            // b acknowledged a break: its latency is shown.
            #expect(clients.contains { $0["lastBreakMilliseconds"] is Double })
            let ids = clients.compactMap { $0["id"] as? String }

            let under = try json("callbacks --server \(cluster.address) --path /src")["callBacks"] as? [[String: Any]] ?? []
            #expect(Set(under.compactMap { $0["path"] as? String }) == ["/src", "/src/f"])
            #expect(Set(under.filter { $0["path"] as? String == "/src/f" }.compactMap { $0["client"] as? String }) == Set(ids))
            let all = try json("callbacks --server \(cluster.address)")["callBacks"] as? [[String: Any]] ?? []
            #expect(all.contains { $0["path"] as? String == "/top" })
            let one = try json("callbacks --server \(cluster.address) --client \(ids[0])")["callBacks"] as? [[String: Any]] ?? []
            #expect(!one.isEmpty && one.allSatisfy { $0["client"] as? String == ids[0] })
            #expect(one.count < all.count)

            let text = try shell("\(peach) admin callbacks --server \(cluster.address) --path /src")
            #expect(text.status == 0)
            #expect(text.output.contains("/src/f") && text.output.contains("expires in"))
            #expect(try shell("\(peach) admin clients --server \(cluster.address)").output.contains("2 clients"))
            let missing = try shell("\(peach) admin callbacks --server \(cluster.address) --path /nothing")
            #expect(missing.status != 0 && missing.output.contains("no such path in the volume: /nothing"), "\(missing.output)")

            let stats = try json("stats --server \(cluster.address)")
            let requests = stats["requests"] as? [String: Int] ?? [:]
            #expect(requests["StoreData"] ?? 0 >= 3)
            #expect(stats["clientsConnected"] as? Int == 2)
            #expect(stats["callBacksBroken"] as? Int ?? 0 >= 1)
            // The counts agree: per client, in total, and as listed.
            let heldPerClient = try json("clients --server \(cluster.address)")["clients"] as? [[String: Any]] ?? []
            let listed = try json("callbacks --server \(cluster.address)")["callBacks"] as? [[String: Any]] ?? []
            #expect(heldPerClient.compactMap { $0["callBacksHeld"] as? Int }.reduce(0, +) == listed.count)
            #expect(stats["callBacksHeld"] as? Int == listed.count)
            #expect(try shell("\(peach) admin stats --server \(cluster.address)").output.contains("callbacks held"))
        }
    }

    @Test("admin questions are refused to a local user other than root, to a machine not named in --admin, and to plain TCP on a TLS server, with a hint")
    func refusals() throws {
        try withMounts { cluster in
            let asUser = try shell("setpriv --reuid=1000 --regid=1000 --clear-groups \(peach) admin stats --server \(cluster.address)")
            #expect(asUser.status != 0)
            #expect(asUser.output.contains("refused"))
        }
        let cell = try CertificateCell(clients: ["alpha", "ops"])
        try withMounts(tls: try cell.serverTLS(), identityPolicy: IdentityPolicy(administrators: ["ops"])) { cluster in
            func admin(_ name: String) throws -> ShellResult {
                try shell("\(peach) admin stats --server \(cluster.address) " + cell.mountArguments(name).map { "'\($0)'" }.joined(separator: " "))
            }
            // Root on the machine, but no certificate: the server takes no plain TCP, and the
            // error says so rather than only "connection closed".
            let plain = try shell("\(peach) admin stats --server \(cluster.address)")
            #expect(plain.status != 0)
            #expect(plain.output.contains("may require TLS"), "\(plain.output)")
            let alpha = try admin("alpha")
            #expect(alpha.status != 0 && alpha.output.contains("refused"))
            let ops = try admin("ops")
            #expect(ops.status == 0, "\(ops.output)")
            #expect(ops.output.contains("callbacks held"))
        }
    }

    @Test("a backup taken while AFS and NFS mounts write restores into a server whose files match byte for byte")
    func backupUnderLoadRestores() throws {
        try withMounts { cluster in
            let a = try cluster.mount("a", design: .afs)
            let n = try cluster.mount("n", design: .nfs)
            // The files that exist before the backup, among them one of 20 MiB.
            try shell("mkdir '\(a.path)/tree' && head -c 20971520 /dev/urandom > '\(a.path)/big' && "
                      + "for i in $(seq 1 200); do echo file $i > '\(a.path)/tree/'$i; done && : > '\(a.path)/empty'")
            let before = try shell("cd '\(a.path)' && find . -type f | sort | xargs sha256sum").output
            // The load: new whole files through the AFS mount, appends in place through NFS.
            let load = try ChildProcess(["sh", "-c", """
                i=0; while [ $i -lt 100000 ]; do i=$((i+1)); printf 'load %d\\n' $i > '\(a.path)/tree/load-'$i; \
                printf 'line %08d\\n' $i >> '\(n.path)/appended'; done
                """], outputFD: 1)
            defer {
                load.signal(SIGKILL)
                load.wait()
            }
            // The load is under way: some files made, some lines appended.
            #expect(eventually { FileManager.default.fileExists(atPath: a.path + "/tree/load-3")
                                 && (Files.read(n.path + "/appended")?.count ?? 0) > 0 })
            let archive = cluster.directory.path + "/volume.tar"
            let backup = try shell("\(peach) admin backup --server \(cluster.address) --out '\(archive)'")
            #expect(backup.status == 0, "\(backup.output)")
            #expect(backup.output.contains("written to"))
            load.signal(SIGKILL)
            load.wait()
            #expect(try shell("\(peach) admin backup --server \(cluster.address) --out '\(archive)'").output.contains("exists already"))

            let restoredRoot = cluster.directory.path + "/restored"
            // A restore serves nothing: an option for serving is refused, not ignored.
            let serving = try shell("\(peach) server --restore '\(archive)' --root '\(restoredRoot)' --listen 127.0.0.1:7999")
            #expect(serving.status != 0 && serving.output.contains("give --listen when starting the server"), "\(serving.output)")
            #expect(!FileManager.default.fileExists(atPath: restoredRoot))
            let restore = try shell("\(peach) server --restore '\(archive)' --root '\(restoredRoot)'")
            try #require(restore.status == 0, "\(restore.output)")
            #expect(try shell("\(peach) server --restore '\(archive)' --root '\(restoredRoot)'").output.contains("not empty"))

            try withMounts(serverRoot: restoredRoot) { restored in
                let r = try restored.mount("r", design: .afs)
                // Everything from before the backup, byte for byte.
                let files = try shell("cd '\(r.path)' && find . -type f ! -name 'load-*' ! -name appended | sort | xargs sha256sum").output
                #expect(files == before)
                // What the load wrote up to the snapshot: whole files (or, for the one made but not
                // yet stored at that instant, an empty one: AFS makes a file, then stores it at
                // close) and a whole prefix of the appends.
                let loaded = try FileManager.default.contentsOfDirectory(atPath: r.path + "/tree").filter { $0.hasPrefix("load-") }
                #expect(!loaded.isEmpty)
                let empty = loaded.filter { Files.read(r.path + "/tree/" + $0) == "" }
                #expect(empty.count <= 1, "\(empty)")
                for name in loaded where !empty.contains(name) {
                    #expect(Files.read(r.path + "/tree/" + name) == "load \(name.dropFirst(5))\n")
                }
                let appended = Files.read(r.path + "/appended") ?? ""
                let lines = appended.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
                #expect(appended.hasSuffix("\n") || appended.isEmpty)
                for (index, line) in lines.enumerated() {
                    #expect(line == String(format: "line %08d", index + 1))
                }
            }
        }
    }

    @Test("after a restore, no mount takes a copy it cached from the old server for a restored or a new file")
    func restoreStartsANewIncarnation() throws {
        try withMounts(serverArguments: []) { cluster in
            let x = try cluster.mount("x", design: .afs)
            let y = try cluster.mount("y", design: .afs)
            #expect(try Files.write(x.path + "/f", "one") == 0)
            let archive = cluster.directory.path + "/volume.tar"
            let backup = try json("backup --server \(cluster.address) --out '\(archive)'")
            #expect(backup["out"] as? String == archive)
            #expect((backup["bytes"] as? Int ?? 0) > 0)
            // After the backup, the old server moves on: f changes, a is made; both mounts cache them.
            #expect(try Files.write(x.path + "/f", "two, after the backup") == 0)
            #expect(try Files.write(x.path + "/a", String(repeating: "x", count: 100)) == 0)
            #expect(Files.read(y.path + "/f") == "two, after the backup")
            #expect(Files.read(y.path + "/a") == String(repeating: "x", count: 100))

            cluster.stopServer()
            for name in try FileManager.default.contentsOfDirectory(atPath: cluster.serverRoot) {
                try FileManager.default.removeItem(atPath: cluster.serverRoot + "/" + name)
            }
            let restore = try shell("\(peach) server --restore '\(archive)' --root '\(cluster.serverRoot)'")
            try #require(restore.status == 0, "\(restore.output)")
            try cluster.startServer()

            // The file y makes now would have had a's number: it must not read as a's copy.
            #expect(try Files.write(y.path + "/b", "hello") == 0)
            #expect(Files.read(x.path + "/b") == "hello")
            #expect(Files.read(x.path + "/f") == "one")
            #expect(Files.read(y.path + "/f") == "one")
            #expect(Files.read(x.path + "/a") == nil)
            #expect(Files.read(y.path + "/a") == nil)
        }
    }
}
