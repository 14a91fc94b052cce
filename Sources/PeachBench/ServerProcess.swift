import Foundation
import PeachClient
import PeachTesting

/// A `peach server` in a process of its own, so its CPU time can be measured apart from the
/// clients'. Stopped with SIGTERM, its root removed.
final class ServerProcess {
    let directory: TemporaryDirectory
    let process: ChildProcess
    let address: ServerAddress

    /// - Parameter extraArguments: more `peach server` options, such as `--sync delayed`.
    /// - Parameter parent: where its root goes (/dev/shm for `bench ops --tmpfs`).
    init(extraArguments: [String] = [], in parent: String? = nil) throws {
        directory = try parent.map { try TemporaryDirectory(prefix: "peach-bench-server", in: $0) }
            ?? TemporaryDirectory(prefix: "peach-bench-server")
        let log = directory.path + "/server.log"
        let fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        defer { close(fd) }
        process = try ChildProcess([MountSupport.peachBinary, "server", "--root", directory.path + "/root", "--listen", "127.0.0.1:0",
                                    "--log-level", "warning"] + extraArguments, outputFD: fd)
        var port: Int?
        for _ in 0..<200 where port == nil {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            if let range = text.range(of: #"127\.0\.0\.1:(\d+)"#, options: .regularExpression) {
                port = Int(text[range].split(separator: ":").last ?? "")
            } else {
                usleep(20_000)
            }
        }
        guard let port else {
            process.signal(SIGKILL)
            process.wait()
            directory.remove()
            throw BenchError("the server did not start: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        }
        address = ServerAddress(host: "127.0.0.1", port: port)
    }

    /// User plus system CPU seconds the server has used so far.
    var cpuSeconds: Double { processCPUSeconds(process.pid) }
    var counters: ProcessCounters { ProcessCounters.read(process.pid) }

    func stop() {
        process.signal(SIGTERM)
        process.wait()
        directory.remove()
    }
}

/// Runs `body(i)` for i in 0..<count on threads of their own, all at once; rethrows the first error.
func concurrently(_ count: Int, _ body: @escaping @Sendable (Int) throws -> Void) throws {
    let errors = NSLock()
    nonisolated(unsafe) var firstError: Error?
    let group = DispatchGroup()
    for i in 0..<count {
        group.enter()
        let thread = Thread {
            defer { group.leave() }
            do { try body(i) } catch {
                errors.lock()
                if firstError == nil { firstError = error }
                errors.unlock()
            }
        }
        thread.stackSize = 1 << 20
        thread.start()
    }
    group.wait()
    if let firstError { throw firstError }
}
