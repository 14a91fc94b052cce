import ArgumentParser
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PeachMetrics
import PeachProtocol
import PeachSecurity
import PeachServer
import PeachSupport

struct ServerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "server",
        abstract: "Run a file server in the foreground (SIGINT or SIGTERM stops it)."
    )

    @Option(help: "Directory for the database and file data; created if missing.")
    var root: String

    @Option(help: "Address to listen on, HOST:PORT.")
    var listen = "127.0.0.1:7000"

    @Option(help: ArgumentHelp("Owner of a new volume's root directory (default 0:0). Over TLS root is squashed, so give the volume to a user, or see --root-mode.", valueName: "UID:GID"))
    var rootOwner: String?

    @Option(help: ArgumentHelp("Mode of a new volume's root directory, octal (default 755; 1777 lets every user make files, as /tmp does).", valueName: "MODE"))
    var rootMode: String?

    @Option(help: "Seconds a mutation waits for a client to acknowledge a callback break before declaring it unreachable.")
    var callbackTimeout = 10

    @Option(help: "Seconds a callback promise lasts.")
    var callbackLifetime = 3600

    @Option(help: "Largest file the volume accepts (K/M/G/T suffixes); larger sizes and offsets get EFBIG.")
    var maxFileSize = ByteSize(bytes: VolumeLimits.defaultMaximumFileSize)

    @Option(help: "Most bytes of file content and symlink targets the volume holds (K/M/G/T suffixes); past it, stores, writes and symlinks get EDQUOT.")
    var quota: ByteSize?

    @Option(help: "Files up to this size (K/M suffixes, at most 1M; 0: none) keep their content in the volume's database rather than in a file of their own.")
    var inlineMax = ByteSize(bytes: UInt64(VolumeStore.defaultInlineMaximum))

    @Option(help: "Connections served at once; more are closed as they arrive.")
    var maxClients = 1024

    @Option(help: "Seconds after which a connection with nothing in flight and no callbacks held is closed.")
    var idleTimeout = 600

    @OptionGroup(title: "Mutual TLS (see the security guide)")
    var tls: TLSOptions

    @Option(help: "A file of client machine names (one per line) whose certificates are refused.")
    var revoked: String?

    @Flag(help: "Serve plain TCP on an address other than loopback: anyone who reaches the port can act as any user.")
    var insecure = false

    @Option(help: "The uid that squashed users act as.")
    var anonUid: UInt32 = 65534

    @Option(help: "The gid that squashed users act as.")
    var anonGid: UInt32 = 65534

    @Option(help: "Client machines (certificate names, comma-separated) whose root stays root; root elsewhere acts as --anon-uid.")
    var noRootSquash = ""

    @Flag(help: "Every user of every client machine acts as --anon-uid/--anon-gid.")
    var allSquash = false

    @Option(help: "Client machines (certificate names, comma-separated) that may only read: every change gets EROFS.")
    var readOnlyClients = ""

    @Option(help: "Client machines (certificate names, comma-separated) that may use `peach admin` over TLS. Root on this machine also may, over plain TCP, when the server runs without TLS; with TLS, root too needs a certificate named here.")
    var admin = ""

    @Option(help: "Unpack a `peach admin backup` archive into --root (new or empty), then exit.")
    var restore: String?

    @Option(help: "When changes reach the disk before their reply: always, onclose (stores and COMMIT), delayed (within 100 ms). See docs/consistency.md.")
    var sync: SyncPolicy = .onclose

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .notice

    @Option(help: "Serve Prometheus metrics at http://HOST:PORT/metrics (docs/operations.md). Unauthenticated: keep it on loopback.")
    var metrics: String?

    func validate() throws {
        if restore != nil {
            // A restore serves nothing: an option for serving would be ignored without a word.
            let serving = Peach.arguments.filter { $0.hasPrefix("--") }.map { String($0.split(separator: "=")[0]) }
                .filter { !["--root", "--restore", "--log-level"].contains($0) }
            if let first = serving.first {
                throw CommandFailure("--restore unpacks the archive into --root and exits; give \(first) when starting the server afterwards")
            }
        }
        if let metrics { try MetricsEndpoint.validate(metrics) }
        _ = try newRoot()
        guard ServerAddress(listen) != nil else { throw CommandFailure("--listen must be HOST:PORT, got '\(listen)'") }
        guard callbackTimeout > 0 else { throw CommandFailure("--callback-timeout must be positive") }
        guard callbackLifetime >= 60 else { throw CommandFailure("--callback-lifetime must be at least 60 seconds") }
        guard maxClients > 0 else { throw CommandFailure("--max-clients must be positive") }
        guard inlineMax.bytes <= UInt64(Frame.dataChunkSize) else {
            throw CommandFailure("--inline-max must be at most 1M (one data frame), got \(inlineMax.bytes) bytes")
        }
        guard idleTimeout > 0 else { throw CommandFailure("--idle-timeout must be positive") }
        if !admin.isEmpty && !tls.isUsed { throw CommandFailure("--admin names certificates: it needs TLS (--tls-cert, --tls-key, --tls-ca)") }
        if revoked != nil && !tls.isUsed { throw CommandFailure("--revoked needs TLS (--tls-cert, --tls-key, --tls-ca)") }
        if !tls.isUsed && !insecure && !Self.isLoopback(ServerAddress(listen)!.host) {
            throw CommandFailure("refusing to serve plain TCP on \(listen): give --tls-cert, --tls-key and --tls-ca, or --insecure")
        }
    }

    /// --root-owner and --root-mode, checked.
    func newRoot() throws -> VolumeStore.RootDirectory? {
        guard rootOwner != nil || rootMode != nil else { return nil }
        var owner: (uid: UInt32, gid: UInt32)?
        if let rootOwner {
            let parts = rootOwner.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, let uid = UInt32(parts[0]), let gid = UInt32(parts[1]) else {
                throw CommandFailure("--root-owner must be UID:GID (numbers), got '\(rootOwner)'")
            }
            owner = (uid, gid)
        }
        var mode: UInt32?
        if let rootMode {
            guard let value = UInt32(rootMode, radix: 8), value <= 0o7777 else {
                throw CommandFailure("--root-mode must be an octal mode such as 755 or 1777, got '\(rootMode)'")
            }
            mode = value
        }
        return VolumeStore.RootDirectory(owner: owner, mode: mode)
    }

    func run() throws {
        if let restore {
            do {
                let restored = try VolumeRestore.restore(archive: restore, into: root)
                print("peach server: restored \(restored.files) files (\(restored.bytes) bytes) from \(restore) into \(root); "
                      + "start it with peach server --root \(root)")
                return
            } catch let failure as VolumeRestore.Failure {
                throw CommandFailure("cannot restore: \(failure)")
            } catch {
                throw CommandFailure("cannot restore: \((error as NSError).localizedDescription)")
            }
        }
        let address = ServerAddress(listen)!
        var logger = Logger(label: "peach.server")
        logger.logLevel = logLevel
        // Signals are taken synchronously below; block them before any thread starts.
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGINT)
        sigaddset(&signals, SIGTERM)
        pthread_sigmask(SIG_BLOCK, &signals, nil)

        var serverTLS: ServerTLS?
        if let files = tls.files {
            do {
                serverTLS = try ServerTLS(files: files, revoked: try revoked.map(ServerTLS.revokedNames) ?? [])
            } catch {
                throw CommandFailure("cannot set up TLS: \(error)")
            }
        }
        // Before the store: metrics made before the backend is bootstrapped go nowhere.
        let started = NIOLockedValueBox<FileServer?>(nil)
        let endpoint = try metrics.map { address in
            try MetricsEndpoint.start(address: address) { started.withLockedValue { $0 }?.refreshMetrics() }
        }
        defer { endpoint?.stop() }
        let store: VolumeStore
        // A server that cannot start leaves no volume behind that it made.
        let rootExisted = FileManager.default.fileExists(atPath: root)
        do {
            store = try VolumeStore(root: root, callBackLifetime: Int64(callbackLifetime),
                                    limits: VolumeLimits(maximumFileSize: maxFileSize.bytes, quota: quota?.bytes), syncPolicy: sync,
                                    newRoot: try newRoot(), inlineMaximum: Int(inlineMax.bytes))
        } catch let error as ExclusiveDirectoryLock.Busy {
            throw CommandFailure("cannot open the volume: \(error)")
        } catch let error as VolumeStore.RootDirectoryMismatch {
            throw CommandFailure("cannot open the volume: \(error)")
        } catch {
            throw CommandFailure("cannot open the volume in \(root): \((error as NSError).localizedDescription)")
        }
        let clients = Self.fitClientsToDescriptors(maxClients, logger: logger)
        let limits = ConnectionLimits(maximumClients: clients, idleTimeout: .seconds(Int64(idleTimeout)))
        let policy = IdentityPolicy(anonymousUID: anonUid, anonymousGID: anonGid, noRootSquash: Self.names(noRootSquash),
                                    allSquash: allSquash, readOnlyClients: Self.names(readOnlyClients), administrators: Self.names(admin))
        let server = FileServer(store: store, callBackTimeout: .seconds(Int64(callbackTimeout)), limits: limits, tls: serverTLS,
                                identityPolicy: policy, logger: logger)
        let port: Int
        do {
            port = try server.start(host: address.host, port: address.port)
        } catch {
            server.stop()
            if !rootExisted { try? FileManager.default.removeItem(atPath: root) }
            let reason = if let io = error as? IOError { String(cString: strerror(io.errnoCode)) }
                else if error is SocketAddressError.UnknownHost { "cannot resolve \(address.host)" } else { "\(error)" }
            throw CommandFailure("cannot listen on \(address): \(reason)")
        }
        started.withLockedValue { $0 = server }
        let transport = serverTLS == nil ? "plain TCP" : "mutual TLS 1.3"
        FileHandle.standardOutput.write(Data("peach server: serving \(root) on \(address.host):\(port), \(transport) (epoch \(store.epoch))\n".utf8))
        if let endpoint {
            FileHandle.standardOutput.write(Data("peach server: metrics at http://\(ServerAddress(metrics!)!.host):\(endpoint.port)/metrics\n".utf8))
        }
        var received: Int32 = 0
        sigwait(&signals, &received)
        print("peach server: stopping on signal \(received)")
        server.stop()
    }
}

extension ServerCommand {
    /// Descriptors a client may make the server hold at once: its socket, a version file being
    /// sent, an upload being received.
    static let descriptorsPerClient: rlim_t = 3
    /// Descriptors kept for the rest: the database, its journal, the listener, logs, metrics.
    static let descriptorsReserved: rlim_t = 64

    /// Raises the soft RLIMIT_NOFILE to the hard limit, and returns `requested`, or fewer
    /// clients if even the hard limit cannot give each its descriptors (logged): a server out of
    /// descriptors cannot accept even to refuse, and spins.
    static func fitClientsToDescriptors(_ requested: Int, logger: Logger) -> Int {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return requested }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        let available = limit.rlim_cur > descriptorsReserved ? limit.rlim_cur - descriptorsReserved : 0
        let fit = Int(min(available / descriptorsPerClient, rlim_t(Int.max)))
        guard requested > fit else { return requested }
        let clients = max(1, fit)
        logger.warning("--max-clients lowered to fit the descriptor limit", metadata: [
            "requested": "\(requested)", "maxClients": "\(clients)", "nofile": "\(limit.rlim_cur)",
            "hint": "raise the limit (ulimit -n, LimitNOFILE=) to serve more",
        ])
        return clients
    }

    /// Loopback addresses (and localhost), where plain TCP reaches only this machine's users.
    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    /// A comma-separated list of machine names.
    static func names(_ list: String) -> Set<String> {
        Set(list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
    }
}

/// A failure reported as one line and a non-zero exit.
struct CommandFailure: Error, CustomStringConvertible {
    var message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

extension SyncPolicy: ExpressibleByArgument {}
