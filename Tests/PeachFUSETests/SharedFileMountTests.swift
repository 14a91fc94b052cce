import Foundation
import PeachLocalCluster
import PeachSupport
import PeachTesting
import Testing

/// Processes of one AFS-mode mount that rewrite and append to one file at once (issue 17):
/// every open and close succeeds, and the file stays readable.
@Suite("Real FUSE mounts: one file, many writers on one mount", .serialized,
       .enabled(if: MountSupport.unavailableReason == nil, "\(MountSupport.unavailableReason ?? "")"))
struct SharedFileMountTests {
    /// Two processes rewrite `path` with O_TRUNC (1 MiB) and two append 500 bytes, for `seconds`;
    /// prints each process's failures and the file's final size.
    static let script = """
        import os, sys, time, multiprocessing
        path, seconds = sys.argv[1], float(sys.argv[2])
        def run(kind):
            end, errors = time.time() + seconds, []
            while time.time() < end:
                try:
                    if kind == "rewrite":
                        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
                        os.write(fd, b"r" * (1 << 20))
                    else:
                        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
                        os.write(fd, b"a" * 500)
                    os.close(fd)
                except OSError as e:
                    errors.append(str(e))
            # One write(2) per line: the four processes share the pipe, and print() may write
            # a line in pieces that interleave.
            os.write(1, ("%s %d %s\\n" % (kind, len(errors), errors[:3])).encode())
        open(path, "wb").write(b"x")
        workers = [multiprocessing.Process(target=run, args=(k,)) for k in ("rewrite", "append", "rewrite", "append")]
        [w.start() for w in workers]
        [w.join() for w in workers]
        print("final", len(open(path, "rb").read()), flush=True)
        """

    @Test("O_TRUNC rewriters and appenders on one file: no open or close fails, and the file opens after (server and cache on tmpfs)")
    func rewritersAndAppenders() throws {
        // tmpfs: with no disk to wait for, the requests interleave tightly (the race needed it).
        let shm = try TemporaryDirectory(prefix: "peach-shared-file", in: "/dev/shm")
        defer { shm.remove() }
        try withMounts(serverArguments: [], serverRoot: shm.path + "/server") { cluster in
            let mount = try cluster.mount("m", design: .afs, cache: shm.path + "/cache")
            let script = cluster.directory.path + "/writers.py"
            try Self.script.write(toFile: script, atomically: true, encoding: .utf8)
            for round in 0..<3 {
                let result = try shell("timeout -s KILL 60 python3 '\(script)' '\(mount.path)/shared\(round)' 6")
                #expect(result.status == 0, "\(result.output)")
                let lines = result.output.split(separator: "\n")
                #expect(lines.filter { $0.hasPrefix("rewrite") || $0.hasPrefix("append") }.allSatisfy { $0.split(separator: " ")[1] == "0" },
                        "round \(round): \(result.output)")
                #expect(lines.contains { $0.hasPrefix("final ") }, "round \(round): \(result.output)")
            }
        }
    }
}
