import Foundation
import PeachSupport

/// A real `peach server` process: for tests that kill it (SIGKILL, SIGSTOP) as a crash or a hang
/// would, and for benchmarks that measure its CPU time apart from the clients'. A restart
/// listens on the same port, so mounts reconnect to it.
public final class ServerProcess: @unchecked Sendable {
    public let root: String
    public private(set) var address: ServerAddress
    private var process: ChildProcess?
    private let arguments: [String]
    private let logDirectory: String
    private let logLevel: String
    /// Made by `init(arguments:temporaryIn:)`, removed by `stop()`.
    private let ownDirectory: TemporaryDirectory?
    private var starts = 0

    /// Starts `peach server --root root` on a free loopback port; `arguments` are added to it.
    public init(root: String, logDirectory: String, arguments: [String] = [], logLevel: String = "info") throws {
        self.root = root
        self.logDirectory = logDirectory
        self.arguments = arguments
        self.logLevel = logLevel
        ownDirectory = nil
        address = ServerAddress(host: "127.0.0.1", port: 0)
        try start()
    }

    /// Starts a server whose root and logs live in a new directory in `parent` (/dev/shm for one
    /// on tmpfs), removed by `stop()`.
    public init(arguments: [String] = [], temporaryIn parent: String = "/tmp", logLevel: String = "warning") throws {
        let directory = try TemporaryDirectory(prefix: "peach-server", in: parent)
        root = directory.path + "/root"
        logDirectory = directory.path
        self.arguments = arguments
        self.logLevel = logLevel
        ownDirectory = directory
        address = ServerAddress(host: "127.0.0.1", port: 0)
        do { try start() } catch {
            directory.remove()
            throw error
        }
    }

    /// The server's process id while it runs.
    public var pid: pid_t? { process?.pid }

    /// The log of the latest start.
    public var log: String { "\(logDirectory)/server-\(starts).log" }

    /// Starts the server again (on the port of the first start), and waits until it listens.
    public func start() throws {
        guard process == nil else { return }
        starts += 1
        let fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw MountError(description: "cannot write \(log)") }
        defer { close(fd) }
        let child = try ChildProcess([MountSupport.peachBinary, "server", "--root", root, "--listen", "127.0.0.1:\(address.port)",
                                      "--log-level", logLevel] + arguments, outputFD: fd)
        process = child
        for _ in 0..<400 {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            if let range = text.range(of: #"127\.0\.0\.1:(\d+)"#, options: .regularExpression),
               let port = Int(text[range].split(separator: ":").last ?? "") {
                address = ServerAddress(host: "127.0.0.1", port: port)
                return
            }
            if !child.isRunning { break }
            usleep(25_000)
        }
        kill()
        throw MountError(description: "the server did not start: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
    }

    /// SIGKILL, as a crash: nothing is flushed, no client is told.
    public func kill() {
        guard let process else { return }
        process.signal(SIGKILL)
        process.wait()
        self.process = nil
    }

    /// SIGSTOP or SIGCONT: the server hangs (its sockets stay open) or resumes.
    public func signal(_ signal: Int32) { process?.signal(signal) }

    /// SIGTERM and wait (SIGCONT first, in case it is stopped).
    public func stop() {
        defer { ownDirectory?.remove() }
        guard let process else { return }
        process.signal(SIGCONT)
        process.signal(SIGTERM)
        for _ in 0..<200 where process.isRunning { usleep(25_000) }
        kill()
    }

    deinit { stop() }
}
