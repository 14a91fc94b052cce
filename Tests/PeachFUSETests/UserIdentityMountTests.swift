import Foundation
import PeachLocalCluster
import PeachProtocol
import PeachSupport
import PeachTesting
import Testing

/// A user other than root, through a real mount: its credential travels with each request and
/// the server, which checks permissions itself, lets it do what a local file system would.
@Suite("Real FUSE mounts: a non-root user", .serialized,
       .enabled(if: MountSupport.unavailableReason == nil && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"),
                "\(MountSupport.unavailableReason ?? "setpriv is missing")"))
struct UserIdentityMountTests {
    /// Runs `command` as uid and gid 1000 with no supplementary groups.
    func asUser(_ command: String, in directory: String) throws -> ShellResult {
        try shell("cd '\(directory)' && setpriv --reuid=1000 --regid=1000 --clear-groups sh -c '\(command)'")
    }

    @Test("uid 1000 creates, changes and removes its own files; they are its own on the server; root's file stays closed to it")
    func ownFiles() throws {
        try withMounts { cluster in
            let a = try cluster.mount("a", extraArguments: ["--allow-other"])
            let b = try cluster.mount("b")
            try shell("mkdir '\(a.path)/home' && chown 1000:1000 '\(a.path)/home' && echo secret > '\(a.path)/root-only' && chmod 600 '\(a.path)/root-only'")
            let work = try asUser("""
                echo hello > home/f && chmod 640 home/f && touch -d 2001-02-03 home/f && mkdir home/sub && \
                mv home/f home/sub/g && cat home/sub/g && ln -s g home/sub/link && truncate -s 3 home/sub/g && cat home/sub/link
                """, in: a.path)
            #expect(work.status == 0, "\(work.output)")
            #expect(work.output == "hello\nhel")
            // Seen from another client: owned by uid 1000, with the mode and times it set.
            #expect(try shell("stat -c '%u %g %a %s' '\(b.path)/home/sub/g'").output == "1000 1000 640 3\n")
            let denied = try asUser("cat root-only", in: a.path)
            #expect(denied.status != 0)
            let cleanup = try asUser("rm home/sub/g home/sub/link && rmdir home/sub", in: a.path)
            #expect(cleanup.status == 0, "\(cleanup.output)")
            #expect(try shell("ls -A '\(b.path)/home'").output == "")
        }
    }

    @Test("on an --allow-other mount, uid 1000 may not list the mount's callbacks or conflicts, flush its cache or resize it, and is told only root may; root may")
    func mountWideControlsNeedRoot() throws {
        try withMounts { cluster in
            let a = try cluster.mount("a", extraArguments: ["--allow-other"])
            let peach = "'\(MountSupport.peachBinary)'"
            // peach fs asks the mount root by its absolute path: uid 1000 must be able to pass the test's directory.
            try shell("chmod 711 \"$(dirname '\(a.path)')\"")
            try shell("mkdir -m 700 '\(a.path)/private' && echo secret > '\(a.path)/private/plans.txt' && cat '\(a.path)/private/plans.txt'")
            for question in ["callbacks", "conflicts", "flushall", "setcachesize . 10M"] {
                let arguments = question.contains(" ") ? question : question + " ."
                let refused = try asUser("\(MountSupport.peachBinary) fs \(arguments) 2>&1", in: a.path)
                #expect(refused.status != 0, "fs \(question) as uid 1000: \(refused.output)")
                #expect(refused.output.contains("only root"), "\(refused.output)")
                #expect(!refused.output.contains("plans.txt"))
            }
            // Root's cache is as it was: the file is still cached, and root may ask.
            let listing = try shell("\(peach) fs callbacks '\(a.path)'")
            #expect(listing.status == 0 && listing.output.contains("/private/plans.txt"), "\(listing.output)")
            #expect(try shell("\(peach) fs flushall '\(a.path)'").status == 0)
        }
    }

    @Test("a write by another user takes set-id bits away at once, as fstat after the write shows, and for good (pjdfstest chmod/12.t)",
          arguments: ClientDesign.allCases)
    func writeTakesSetIDBitsAway(design: ClientDesign) throws {
        try withMounts { cluster in
            let a = try cluster.mount("a", design: design, extraArguments: ["--allow-other"])
            let b = try cluster.mount("b", design: design)
            try shell("chmod 711 \"$(dirname '\(a.path)')\"")
            let script = """
                import os, sys
                fd = os.open(sys.argv[1], os.O_WRONLY)
                os.write(fd, b"x")
                print("%o" % (os.fstat(fd).st_mode & 0o7777))
                os.close(fd)
                print("%o" % (os.stat(sys.argv[1]).st_mode & 0o7777))
                """
            try script.write(toFile: cluster.directory.path + "/write-and-fstat.py", atomically: true, encoding: .utf8)
            try shell("chmod 644 '\(cluster.directory.path)/write-and-fstat.py'")
            // 02777: group-executable, so set-group-ID goes too. 02767: it stays (a mandatory-locking mark).
            for (mode, expected) in [("4777", "777"), ("2777", "777"), ("6777", "777"), ("2767", "2767")] {
                let file = "\(a.path)/setid-\(mode)"
                try shell("echo a > '\(file)' && chmod \(mode) '\(file)'")
                let written = try asUser("/usr/bin/python3 \(cluster.directory.path)/write-and-fstat.py \(file)", in: a.path)
                #expect(written.status == 0, "\(design) \(mode): \(written.output)")
                #expect(written.output == "\(expected)\n\(expected)\n", "\(design) \(mode): \(written.output)")
                // The server took them away too: another mount sees the same.
                #expect(try shell("stat -c %a '\(b.path)/setid-\(mode)'").output == "\(expected)\n", "\(design) \(mode)")
            }
            // Root's write keeps them.
            try shell("echo a > '\(a.path)/root-writes' && chmod 6777 '\(a.path)/root-writes'")
            let rootWrite = try shell("/usr/bin/python3 \(cluster.directory.path)/write-and-fstat.py '\(a.path)/root-writes'")
            #expect(rootWrite.output == "6777\n6777\n", "\(design): \(rootWrite.output)")
        }
    }
}
