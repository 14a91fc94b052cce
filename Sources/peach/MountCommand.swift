import ArgumentParser
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import PeachClient
import PeachFUSE
import PeachMetrics
import PeachProtocol
import PeachSecurity
import PeachSupport

struct MountCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mount",
        abstract: "Mount PeachFS on MOUNTPOINT with a whole-file caching cache manager.",
        discussion: """
            Every option also has an -o spelling, as fstab and `mount -t fuse.peach` use: \
            `-o server=HOST:PORT,cache=DIR,mode=afs,cache_size=4G,soft`. mount(8)'s own options \
            (rw, _netdev, nofail, x-systemd.*, ...) are ignored (docs/operations.md).

            Without --foreground, returns once the mount answers and keeps serving in the \
            background (its log: CACHE/peach-mount.log). Unmount with `umount MOUNTPOINT` or \
            `fusermount3 -u MOUNTPOINT`; the cache manager then stores what is dirty and exits.
            """
    )

    @Argument(help: "An existing directory to mount on.")
    var mountPoint: String

    @Option(help: "The file server, HOST:PORT.")
    var server = "127.0.0.1:7000"

    @Option(help: "Client design: afs (whole files on disk under callbacks) or nfs (blocks in memory, attribute timeouts).")
    var mode: ClientMode = .afs

    @Option(help: "Cache directory (afs: the disk cache, kept across mounts; both: the background log). Required for afs.")
    var cache: String?

    @Option(help: "Cache size limit, K/M/G/T suffixes (afs: disk, default 2G; nfs: memory, default 256M).")
    var cacheSize: ByteSize?

    @OptionGroup(title: "NFS mode options, as in nfs(5)")
    var nfs: NFSMountOptions

    @OptionGroup(title: "Mutual TLS (see the security guide)")
    var tls: TLSOptions

    @Flag(help: "Fail a request the server does not answer within --timeout with ETIMEDOUT, instead of waiting and retrying until it does (the default, as an NFS hard mount).")
    var soft = false

    @Option(help: "Seconds a request waits for an unreachable server with --soft.")
    var timeout = 30

    @Flag(help: "afs: while the server is away, serve cached files read-only (possibly stale; docs/recovery.md).")
    var offlineReads = false

    @Flag(help: "afs: a close returns once the data is in the cache, and the store follows (peach fs storebehind; docs/consistency.md).")
    var storeBehind = false

    @Flag(help: "Let other users use the mount (the kernel checks permissions).")
    var allowOther = false

    @Flag(help: "Stay in the foreground.")
    var foreground = false

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .notice

    @Option(help: "Serve Prometheus metrics at http://HOST:PORT/metrics (docs/operations.md). Unauthenticated: keep it on loopback.")
    var metrics: String?

    func validate() throws {
        if let metrics { try MetricsEndpoint.validate(metrics) }
        guard let address = ServerAddress(server), address.port != 0 else {
            throw CommandFailure("--server must be HOST:PORT, got '\(server)'")
        }
        if mode == .afs && cache == nil { throw CommandFailure("--cache DIR is required with --mode afs") }
        if mode == .afs && nfs.isUsed { throw CommandFailure("NFS options (--block-size, --ac*, --noac, --nocto) need --mode nfs") }
        try nfs.validate()
        guard timeout > 0 else { throw CommandFailure("--timeout must be positive") }
        if offlineReads && mode != .afs { throw CommandFailure("--offline-reads needs --mode afs (an NFS-mode mount caches no whole files)") }
    }

    /// Hard by default; soft with --soft.
    private var retry: ServerConnection.RetryPolicy {
        soft ? .soft(.seconds(Int64(timeout))) : .hard
    }

    /// Where a background mount logs: the cache directory, or /tmp for an NFS-mode mount without one.
    private var logDirectory: String {
        if let cache { return cache }
        return "/tmp/peach-\(getuid())"
    }

    /// `mkdir -p`: nil once `path` is a directory, else why not, naming the part that failed
    /// (Foundation's error says "not a directory" for a missing permission too).
    static func makeDirectories(_ path: String) -> String? {
        var prefix = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            prefix += "/" + part
            var st = stat()
            if stat(prefix, &st) == 0 {
                if st.st_mode & S_IFMT != S_IFDIR { return "\(prefix) is not a directory" }
                continue
            }
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
                return "cannot create \(prefix): \(String(cString: strerror(errno)))"
            }
        }
        return nil
    }

    func run() throws {
        let readyFD = Daemon.inheritedReadyDescriptor
        do {
            try checkMountPoint()
            if let reason = Self.makeDirectories(logDirectory) {
                throw CommandFailure("cannot use \(logDirectory) as the cache directory: \(reason)")
            }
            if !foreground, mode == .afs, let cache {
                // Refused here, before a daemon would open the log of the mount that holds it.
                do {
                    try ExclusiveDirectoryLock.acquire(cache, what: "cache directory").release()
                } catch {
                    throw CommandFailure("cannot start the cache manager: \(error)")
                }
            }
        } catch {
            Daemon.report("\(error)", on: readyFD)
            throw error
        }
        if !foreground {
            // As parsed: mount(8)'s and -o's spellings spelled out.
            var arguments = Peach.arguments
            arguments.append("--foreground")
            let logName = cache == nil ? "mount-" + MountTable.canonical(mountPoint).replacingOccurrences(of: "/", with: "_") + ".log"
                : "peach-mount.log"
            let logPath = MountTable.canonical(logDirectory) + "/" + logName
            if let failure = try Daemon.spawnAndWait(arguments: arguments, logPath: logPath) {
                throw CommandFailure(failure)
            }
            // The daemon mounted; this stat waits until its loop answers.
            var st = stat()
            guard stat(mountPoint, &st) == 0 else {
                throw CommandFailure("the mount at \(mountPoint) does not answer; see \(logPath)")
            }
            print("peach: mounted \(mountPoint) (\(mode.rawValue) mode, server \(server))")
            return
        }
        try serve(readyFD: readyFD)
    }

    private func checkMountPoint() throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: mountPoint, isDirectory: &isDirectory) else {
            throw CommandFailure("mount point \(mountPoint) does not exist")
        }
        guard isDirectory.boolValue else { throw CommandFailure("mount point \(mountPoint) is not a directory") }
        guard !MountTable.isMounted(mountPoint) else { throw CommandFailure("\(mountPoint) is already mounted") }
        guard access("/dev/fuse", R_OK | W_OK) == 0 else {
            throw CommandFailure("/dev/fuse is missing or not usable (load the fuse module; in a container, pass the device)")
        }
    }

    /// PEACH_NO_KERNEL_INVALIDATION=1 switches kernel invalidation off: the negative control of
    /// the tests that show it works (docs/architecture.md).
    private var kernelInvalidation: Bool {
        ProcessInfo.processInfo.environment["PEACH_NO_KERNEL_INVALIDATION"] != "1"
    }

    private func serve(readyFD: Int32?) throws {
        var logger = Logger(label: "peach.mount")
        logger.logLevel = logLevel
        let cacheManager: CacheManager
        let fileSystem: FUSEFileSystem
        // Before the cache manager: metrics made before the backend is bootstrapped go nowhere.
        let endpoint: MetricsEndpoint?
        let published = NIOLockedValueBox<ClientStatistics?>(nil)
        do {
            endpoint = try metrics.map { address in
                try MetricsEndpoint.start(address: address) { published.withLockedValue { $0 }?.publishMetrics() }
            }
        } catch {
            Daemon.report("\(error)", on: readyFD)
            throw CommandFailure("\(error)")
        }
        defer { endpoint?.stop() }
        do {
            let address = ServerAddress(server)!
            let clientTLS = try tls.files.map { try ClientTLS(files: $0) }
            switch mode {
            case .afs:
                cacheManager = try AFSCacheManager(server: address, cacheDirectory: cache!,
                                                   cacheSize: cacheSize?.bytes ?? (2 << 30), tls: clientTLS, retry: retry,
                                                   offlineReads: offlineReads, storeBehind: storeBehind, logger: logger)
            case .nfs:
                cacheManager = NFSCacheManager(server: address, options: nfs.options(cacheSize: cacheSize?.bytes), tls: clientTLS,
                                               retry: retry, logger: logger)
            }
            try cacheManager.start()
            published.withLockedValue { $0 = cacheManager.statistics }
        } catch {
            // The reason alone ("cannot reach the file server at ...: Connection refused").
            let reason = (error as? FileSystemError).map { $0.reason.isEmpty ? "\($0)" : $0.reason } ?? "\(error)"
            let message = "cannot start the cache manager: \(reason)"
            Daemon.report(message, on: readyFD)
            throw CommandFailure(message)
        }
        do {
            fileSystem = try FUSEFileSystem(cacheManager: cacheManager, mountPoint: mountPoint,
                                            options: .init(allowOther: allowOther, kernelInvalidation: kernelInvalidation, fsName: server),
                                            logger: logger)
        } catch {
            cacheManager.shutdown()
            Daemon.report("\(error)", on: readyFD)
            throw CommandFailure("\(error)")
        }
        logger.notice("mounted", metadata: ["mountPoint": "\(mountPoint)", "server": "\(server)", "mode": "\(mode.rawValue)"])
        Daemon.report("ready", on: readyFD)
        let result = fileSystem.run()
        cacheManager.shutdown()
        logger.notice("unmounted", metadata: ["mountPoint": "\(mountPoint)", "loop": "\(result)"])
    }
}
