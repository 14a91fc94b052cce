import Foundation
import PeachClient
import PeachProtocol
import PeachSecurity
import PeachServer
import PeachSupport

/// Why a mount test cannot run here.
public enum MountSupport {
    /// nil when FUSE mounts work here, else the reason to skip.
    public static var unavailableReason: String? {
        if access("/dev/fuse", R_OK | W_OK) != 0 { return "/dev/fuse is missing or not usable: FUSE mount tests skipped" }
        if access("/usr/bin/fusermount3", X_OK) != 0 && access("/bin/fusermount3", X_OK) != 0 {
            return "fusermount3 is not installed (apt-get install fuse3): FUSE mount tests skipped"
        }
        return nil
    }

    /// The `peach` executable the mounts run: $PEACH_BINARY, or .build/debug/peach of this package.
    public static var peachBinary: String {
        if let path = ProcessInfo.processInfo.environment["PEACH_BINARY"] { return path }
        return packageRoot + "/.build/debug/peach"
    }

    /// This package's directory (the Makefile, contrib/).
    public static var packageRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }
}

public struct MountError: Error, CustomStringConvertible {
    public var description: String
    public init(description: String) { self.description = description }
}

/// A file server (in this process, or a `peach server` process that tests can kill) and real FUSE
/// mounts, each a `peach mount --foreground` process of its own (so this process's file system
/// calls never wait on its own threads). `shutdown()` unmounts and stops everything it started,
/// in every outcome.
public final class MountedCluster: @unchecked Sendable {
    public struct Mount: Sendable {
        public let path: String
        public let cache: String
        public let log: String
        let process: ChildProcess
    }

    public let directory: TemporaryDirectory
    public let serverRoot: String
    /// The in-process server (nil with `serverProcess`).
    public private(set) var server: FileServer!
    /// The `peach server` process, when asked for one.
    public let serverProcess: ServerProcess?
    public private(set) var port: Int
    public private(set) var mounts: [Mount] = []
    private var stopped = false
    private let tls: ServerTLS?
    private let identityPolicy: IdentityPolicy

    /// - Parameters:
    ///   - tls: serve mutual TLS only (mounts then need `--tls-*` arguments).
    ///   - serverArguments: run the server as a `peach server` process with these arguments,
    ///     so that `killServer()` crashes it for real; nil runs it in this process.
    ///   - serverRoot: the server's root directory (default: one inside the cluster's directory).
    public init(tls: ServerTLS? = nil, identityPolicy: IdentityPolicy = IdentityPolicy(), serverArguments: [String]? = nil,
                serverRoot: String? = nil) throws {
        self.tls = tls
        self.identityPolicy = identityPolicy
        if !FileManager.default.isExecutableFile(atPath: MountSupport.peachBinary) {
            throw MountError(description: "\(MountSupport.peachBinary) is not built: run `swift build` first (make test does)")
        }
        directory = try TemporaryDirectory(prefix: "peach-mount")
        self.serverRoot = try serverRoot ?? directory.subdirectory("server")
        if let serverArguments {
            let process = try ServerProcess(root: self.serverRoot, logDirectory: directory.path,
                                            arguments: ["--callback-timeout", "5"] + serverArguments)
            serverProcess = process
            port = process.address.port
        } else {
            serverProcess = nil
            server = FileServer(store: try VolumeStore(root: self.serverRoot), callBackTimeout: .seconds(5), tls: tls,
                                identityPolicy: identityPolicy)
            port = try server.start(host: "127.0.0.1", port: 0)
        }
    }

    public var address: String { "127.0.0.1:\(port)" }

    /// Stops the server (clients see it as down) and starts it again on the same port and root.
    public func stopServer() {
        if let serverProcess { serverProcess.stop() } else { server.stop() }
    }

    /// SIGKILL of the server process (a stop, for an in-process server).
    public func killServer() {
        if let serverProcess { serverProcess.kill() } else { server.stop() }
    }

    public func startServer() throws {
        if let serverProcess { return try serverProcess.start() }
        server = FileServer(store: try VolumeStore(root: serverRoot), callBackTimeout: .seconds(5), tls: tls,
                            identityPolicy: identityPolicy)
        port = try server.start(host: "127.0.0.1", port: port)
    }

    /// Mounts a new cache manager of `design` and waits until the mount answers.
    @discardableResult
    public func mount(_ name: String, design: ClientDesign, extraArguments: [String] = [], through proxy: (any LoopbackRelay)? = nil,
                      cache: String? = nil) throws -> Mount {
        try mount(name, extraArguments: ["--mode", design.rawValue] + extraArguments, through: proxy, cache: cache)
    }

    /// Mounts a new cache manager and waits until the mount answers. With `proxy`, the mount
    /// reaches the server through it (`TCPProxy(targetPort: port)`); with `cache`, its cache
    /// directory is there (default: one in the cluster's directory).
    @discardableResult
    public func mount(_ name: String, extraArguments: [String] = [], environment: [String: String] = [:],
                      through proxy: (any LoopbackRelay)? = nil, cache: String? = nil) throws -> Mount {
        let path = try directory.subdirectory(name)
        let cache = cache ?? directory.path + "/cache-" + name
        let log = directory.path + "/\(name).log"
        let logFD = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard logFD >= 0 else { throw MountError(description: "cannot write \(log)") }
        defer { close(logFD) }
        let process = try ChildProcess(
            [MountSupport.peachBinary, "mount", path, "--server", proxy.map { "127.0.0.1:\($0.port)" } ?? address, "--cache", cache, "--foreground", "--log-level", "info"]
                + extraArguments, environment: environment, outputFD: logFD)
        let mount = Mount(path: path, cache: cache, log: log, process: process)
        mounts.append(mount)
        for _ in 0..<200 {
            if Self.isMounted(path) {
                var st = stat()
                if stat(path, &st) == 0 { return mount }
            }
            if !process.isRunning { break }
            usleep(50_000)
        }
        let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        throw MountError(description: "the mount at \(path) did not come up: \(output)")
    }

    public static func isMounted(_ path: String) -> Bool {
        let table = (try? String(contentsOfFile: "/proc/mounts", encoding: .utf8)) ?? ""
        return table.split(separator: "\n").contains { $0.split(separator: " ").dropFirst().first.map(String.init) == path }
    }

    /// Unmounts (lazily if busy) and waits for the cache manager to exit; kills it if it hangs.
    public func unmount(_ mount: Mount) {
        if Self.isMounted(mount.path) {
            if (try? shell("fusermount3 -u '\(mount.path)'"))?.status != 0 {
                _ = try? shell("fusermount3 -uz '\(mount.path)'")
            }
        }
        for _ in 0..<200 where mount.process.isRunning { usleep(50_000) }
        if mount.process.isRunning {
            mount.process.signal(SIGKILL)
            mount.process.wait()
            if Self.isMounted(mount.path) { _ = try? shell("fusermount3 -uz '\(mount.path)'") }
        }
        if mount.process.wait() >= 128 {
            // A cache manager that died of a signal (a crash): its log says why.
            let log = (try? String(contentsOfFile: mount.log, encoding: .utf8)) ?? ""
            print("peach mount at \(mount.path) died of a signal; the end of its log:\n\(log.suffix(3000))")
        }
        mounts.removeAll { $0.path == mount.path }
    }

    /// Sends `signal` to a cache manager's process (SIGSTOP and SIGCONT pause and resume it).
    public func signal(_ mount: Mount, _ signal: Int32) {
        mount.process.signal(signal)
    }

    /// SIGKILL of a cache manager, as a crash: nothing is stored or written back. Its mount point
    /// is then unmounted; its cache directory stays for a later mount of the same name.
    public func killMount(_ mount: Mount) {
        mount.process.signal(SIGKILL)
        mount.process.wait()
        if Self.isMounted(mount.path), (try? shell("fusermount3 -u '\(mount.path)'"))?.status != 0 {
            _ = try? shell("fusermount3 -uz '\(mount.path)'")
        }
        mounts.removeAll { $0.path == mount.path }
    }

    public func shutdown() {
        guard !stopped else { return }
        stopped = true
        for mount in mounts { unmount(mount) }
        stopServer()
        directory.remove()
    }

    deinit { shutdown() }
}

/// Runs `body` with a mounted cluster, cleaned up in every outcome.
public func withMounts<T>(tls: ServerTLS? = nil, identityPolicy: IdentityPolicy = IdentityPolicy(), serverArguments: [String]? = nil,
                          serverRoot: String? = nil, _ body: (MountedCluster) throws -> T) throws -> T {
    let cluster = try MountedCluster(tls: tls, identityPolicy: identityPolicy, serverArguments: serverArguments, serverRoot: serverRoot)
    defer { cluster.shutdown() }
    return try body(cluster)
}

/// `peach ARGUMENTS --json` (the binary the mounts run), its output decoded as a JSON object;
/// a failure, or output that is not one, throws with what it printed.
public func peachJSON(_ arguments: String) throws -> [String: Any] {
    let result = try shell("'\(MountSupport.peachBinary)' \(arguments) --json")
    guard result.status == 0, let object = try? JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any] else {
        throw MountError(description: "peach \(arguments): \(result.output)")
    }
    return object
}
