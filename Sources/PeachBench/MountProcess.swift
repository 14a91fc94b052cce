import Foundation
import PeachClient
import PeachLocalCluster
import PeachProtocol
import PeachSupport

/// A `peach mount --foreground` process against a server process, so the cache manager's CPU
/// time can be read apart from the benchmark's. Unmounted and reaped by `stop()`.
final class MountProcess {
    let path: String
    let process: ChildProcess
    private let directory: TemporaryDirectory

    /// - Parameter parent: where its cache goes (/dev/shm for `bench ops --tmpfs`).
    init(design: ClientDesign, server: ServerAddress, extraArguments: [String] = [], in parent: String? = nil) throws {
        directory = try parent.map { try TemporaryDirectory(prefix: "peach-bench-\(design.rawValue)", in: $0) }
            ?? TemporaryDirectory(prefix: "peach-bench-\(design.rawValue)")
        path = try directory.subdirectory("mnt")
        let log = directory.path + "/mount.log"
        let fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        defer { close(fd) }
        process = try ChildProcess([MountSupport.peachBinary, "mount", path, "--server", "\(server.host):\(server.port)",
                                    "--cache", directory.path + "/cache", "--mode", design.rawValue, "--foreground"] + extraArguments,
                                   outputFD: fd)
        for _ in 0..<200 where !MountedCluster.isMounted(path) && process.isRunning { usleep(50_000) }
        guard MountedCluster.isMounted(path) else {
            stop()
            throw BenchError("the \(design.rawValue) mount did not come up: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        }
    }

    var cpuSeconds: Double { processCPUSeconds(process.pid) }
    var counters: ProcessCounters { ProcessCounters.read(process.pid) }

    func stop() {
        if MountedCluster.isMounted(path), (try? shell("fusermount3 -u '\(path)'"))?.status != 0 {
            _ = try? shell("fusermount3 -uz '\(path)'")
        }
        for _ in 0..<200 where process.isRunning { usleep(50_000) }
        if process.isRunning {
            process.signal(SIGKILL)
            process.wait()
        }
        directory.remove()
    }
}
