import Foundation
import PeachLocalCluster
import PeachProtocol
import PeachSupport
import PeachTesting
import Testing

/// Every operation the common tools need, through one mount, checked through the other.
@Suite("Real FUSE mounts: file operations", .serialized,
       .enabled(if: MountSupport.unavailableReason == nil, "\(MountSupport.unavailableReason ?? "")"))
struct OperationTests {
    func run(_ script: String, in directory: String) throws -> String {
        let result = try shell("set -euo pipefail\n" + script, in: directory)
        #expect(result.status == 0, "\(script)\n\(result.output)")
        return result.output
    }

    @Test("ls, mkdir -p, cp -a, mv, rm -r, ln, ln -s, chmod, touch, truncate, cat, >>, mkfifo", arguments: ClientDesign.allCases)
    func coreutils(_ design: ClientDesign) throws {
        try withMounts { cluster in
            let a = try cluster.mount("a", design: design).path
            let b = try cluster.mount("b", design: design).path
            _ = try run("""
                mkdir -p deep/er/est
                echo line1 > deep/file
                echo line2 >> deep/file
                cp -a deep copy
                mv copy/file copy/renamed
                mv copy/er copy/moved
                ln deep/file hardlink
                ln -s deep/file symlink
                chmod 0640 deep/file
                touch -d '2001-02-03 04:05:06.123456789' deep/file
                truncate -s 100 sparse
                mkfifo fifo
                python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind("sock")'
                echo gone > doomed && rm doomed
                mkdir -p tree/a/b && touch tree/a/b/c && rm -r tree
                echo over > target && echo source > src && mv src target
                """, in: a)
            #expect(try run("cat deep/file", in: b) == "line1\nline2\n")
            #expect(try run("cat copy/renamed", in: b) == "line1\nline2\n")
            #expect(try run("ls copy", in: b) == "moved\nrenamed\n")
            #expect(try run("stat -c '%h %a' deep/file", in: b) == "2 640\n")
            #expect(try run("stat -c '%y' hardlink", in: b).hasPrefix("2001-02-03 04:05:06.123456789"))
            #expect(try run("readlink symlink && cat symlink", in: b) == "deep/file\nline1\nline2\n")
            #expect(try run("stat -c '%s' sparse && od -An -tx1 -N4 sparse", in: b) == "100\n 00 00 00 00\n")
            #expect(try run("stat -c '%F' fifo sock", in: b) == "fifo\nsocket\n")
            #expect(try run("ls", in: b) == "copy\ndeep\nfifo\nhardlink\nsock\nsparse\nsymlink\ntarget\n")
            // statfs: the server's free space, and names up to 255 bytes.
            #expect(try run("stat -f -c '%l' .", in: b) == "255\n")
            #expect(try run("df --output=target . | tail -1", in: b).hasSuffix("/b\n"))
            #expect(try run("cat target", in: b) == "source\n")
            #expect(try run("ls -d deep/er/est && stat -c '%h' deep", in: b) == "deep/er/est\n3\n")
        }
    }

    @Test("errors are a local file system's: ENOENT, EEXIST, ENOTEMPTY, ENOTDIR, EISDIR, ENAMETOOLONG", arguments: ClientDesign.allCases)
    func errors(_ design: ClientDesign) throws {
        try withMounts { cluster in
            let a = try cluster.mount("a", design: design).path
            _ = try run("mkdir d && touch d/x f", in: a)
            func errnoOf(_ body: () -> Int32) -> Int32 { body() == 0 ? 0 : errno }
            #expect(errnoOf { open(a + "/missing", O_RDONLY) >= 0 ? 0 : -1 } == ENOENT)
            #expect(errnoOf { open(a + "/f", O_WRONLY | O_CREAT | O_EXCL, 0o644) >= 0 ? 0 : -1 } == EEXIST)
            #expect(errnoOf { mkdir(a + "/d", 0o755) } == EEXIST)
            #expect(errnoOf { rmdir(a + "/d") } == ENOTEMPTY)
            #expect(errnoOf { mkdir(a + "/f/sub", 0o755) } == ENOTDIR)
            #expect(errnoOf { unlink(a + "/d") } == EISDIR)
            #expect(errnoOf { open(a + "/" + String(repeating: "n", count: 256), O_WRONLY | O_CREAT, 0o644) >= 0 ? 0 : -1 } == ENAMETOOLONG)
            #expect(errnoOf { rename(a + "/d", a + "/d/x/inside") } == ENOTDIR)
            #expect(errnoOf { rename(a + "/d", a + "/f") } == ENOTDIR)
        }
    }

    @Test("new files belong to the calling process's uid and gid")
    func ownership() throws {
        try withMounts { cluster in
            // Other users reach a mount only with --allow-other.
            let a = try cluster.mount("a", extraArguments: ["--allow-other"]).path
            let b = try cluster.mount("b").path
            _ = try run("chmod 1777 .", in: a)
            _ = try run("setpriv --reuid=65534 --regid=65534 --clear-groups bash -c 'echo x > mine && mkdir mydir'", in: a)
            #expect(try run("stat -c '%u:%g' mine mydir", in: b) == "65534:65534\n65534:65534\n")
            // The kernel checks permissions (default_permissions): nobody may not write root's file.
            _ = try run("echo root > rootfile && chmod 644 rootfile", in: a)
            let denied = try shell("setpriv --reuid=65534 --regid=65534 --clear-groups bash -c 'echo x > rootfile'", in: a)
            #expect(denied.status != 0)
        }
    }

    @Test("a source tree copied with cp -a into one mount comes out of the other byte-identical; tar round-trips")
    func treeCopy() throws {
        try withMounts { cluster in
            let a = try cluster.mount("a").path
            let b = try cluster.mount("b").path
            // A real source tree: metadata (modes, owners, nanosecond times) and bytes must survive.
            let source = "/usr/include/linux"
            _ = try run("cp -a \(source) tree", in: a)
            let archive = "tar c --sort=name --numeric-owner -C"
            let local = try run("\(archive) \(source) . | sha256sum", in: "/")
            #expect(try run("\(archive) tree . | sha256sum", in: b) == local)
            #expect(try run("\(archive) tree . | sha256sum", in: a) == local)
            _ = try run("mkdir x && tar c -C \(source) . | tar x -C x", in: a)
            #expect(try run("diff -r \(source) x && echo same", in: b) == "same\n")
        }
    }

    @Test("git init, add and commit work inside the mount", .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/git")),
          arguments: ClientDesign.allCases)
    func git(_ design: ClientDesign) throws {
        try withMounts { cluster in
            let a = try cluster.mount("a", design: design).path
            let b = try cluster.mount("b", design: design).path
            _ = try run("""
                mkdir repo && cd repo
                git init -q
                echo 'hello' > README
                mkdir src && echo 'int main(void) { return 0; }' > src/main.c
                git add -A
                git -c user.email=t@example.com -c user.name=Test commit -qm first
                echo more >> README
                git -c user.email=t@example.com -c user.name=Test commit -qam second
                """, in: a)
            #expect(try run("cd repo && git log --format=%s && git status --porcelain", in: b) == "second\nfirst\n")
            #expect(try run("cd repo && git fsck --no-progress 2>&1 && echo ok", in: b).hasSuffix("ok\n"))
        }
    }

    @Test("make builds a C program inside the mount", .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/make")
        && FileManager.default.isExecutableFile(atPath: "/usr/bin/cc")))
    func make() throws {
        try withMounts { cluster in
            let a = try cluster.mount("a").path
            let b = try cluster.mount("b").path
            _ = try run("""
                mkdir proj && cd proj
                printf '#include <stdio.h>\\nint main(void) { puts("built"); return 0; }\\n' > hello.c
                printf 'hello: hello.c\\n\\tcc -o hello hello.c\\n' > Makefile
                make -s
                """, in: a)
            #expect(try run("proj/hello", in: b) == "built\n")
            #expect(try run("cd proj && make -q && echo up-to-date", in: b) == "up-to-date\n")
        }
    }
}
