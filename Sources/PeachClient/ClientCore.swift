import Dispatch
import Logging
import NIOCore
import PeachProtocol
import PeachSecurity
import PeachSupport
import Synchronization

/// The half of a cache manager that does not depend on the design, as in Linux's kAFS, where one
/// client core serves every volume: the connection (with its retries, lease and numbering), the
/// open-file handles, the kernel notifier, the statistics, and the start and unmount sequence.
/// The designs reach the server only through the pipeline in `ServerPipeline.swift`.
///
/// A design (`CacheDesign`) adds its two policies: what keeps a cached status valid (callbacks in
/// AFS mode, attribute timeouts in NFS mode) and where file data lives (whole files on disk, or
/// blocks in memory). See docs/architecture.md.
final class ClientCore<OpenHandle: Sendable>: Sendable {
    let connection: ServerConnection
    let statistics: ClientStatistics
    let logger: Logger
    let handles = HandleTable<OpenHandle>()
    /// Kernel invalidations that may wait for kernel locks (pages, names) go out from here, never
    /// from a thread that serves a request or acknowledges a break.
    let kernelQueue: DispatchQueue
    private let installedNotifier = Mutex<KernelNotifier?>(nil)

    /// How long an unmount waits for a server that is away.
    static var shutdownGrace: TimeAmount { .milliseconds(1500) }

    init(design: ClientDesign, server: ServerAddress, clientID: String, epoch: UInt64, tls: ClientTLS?,
         retry: ServerConnection.RetryPolicy, readsGiveUpWhenAway: Bool = false, logger: Logger) {
        statistics = ClientStatistics(mode: design.rawValue)
        connection = ServerConnection(address: server, clientID: clientID, epoch: epoch, design: design, statistics: statistics,
                                      tls: tls, retry: retry, readsGiveUpWhenAway: readsGiveUpWhenAway, logger: logger)
        kernelQueue = DispatchQueue(label: "peach.\(design).kernel")
        self.logger = logger
    }

    // MARK: The kernel

    /// The FUSE adapter's notifier; nil for in-process clients, which have no kernel cache.
    var notifier: KernelNotifier? { installedNotifier.withLock { $0 } }

    func setNotifier(_ notifier: KernelNotifier?) { installedNotifier.withLock { $0 = notifier } }

    /// Runs `body` with the notifier on `kernelQueue`: never on the calling thread, which may be
    /// serving a request on the very inode the kernel is told about.
    func tellKernelLater(_ body: @escaping @Sendable (KernelNotifier) -> Void) {
        kernelQueue.async { [self] in
            if let notifier { body(notifier) }
        }
    }

    // MARK: Start and unmount

    /// Connects, then has the design learn the root (`fetchRoot`).
    func start(fetchRoot: () throws -> Void) throws {
        try connection.connect()
        try fetchRoot()
    }

    /// Unmount. The server gets `shutdownGrace` in all: for each dirty file (`store`; one that
    /// fails is logged and becomes what `unsaved` says) and for the design's `farewell` (AFS mode
    /// gives its callbacks up). Then the connection closes: a server that is away may not hold
    /// the unmount up.
    func shutdown(storing dirty: [FID], store: (FID) throws -> Void, unsaved: String, farewell: () -> Void = {}) {
        connection.beginShutdown(within: Self.shutdownGrace)
        for fid in dirty {
            do { try store(fid) } catch {
                logger.error("a dirty file could not be stored at unmount; \(unsaved)",
                             metadata: ["fid": "\(fid)", "error": "\(error)"])
            }
        }
        farewell()
        connection.close()
    }

    // MARK: The connection's state

    /// Whether the lease holds and the server is there: what the tables may know of the
    /// connection, without a way to send on it.
    var lease: LeaseView { LeaseView(connection: connection) }

    var serverAddress: ServerAddress { connection.address }

    /// `peach fs checkservers`: one ping, answered within `timeout` or not.
    func checkServer(timeout: TimeAmount) -> ServerCheck { connection.check(timeout: timeout) }

    /// What the connection calls back: a Hello's reply, a push, the connection's close.
    func setHandlers(hello: @escaping ServerConnection.HelloHandler, push: @escaping ServerConnection.PushHandler,
                     closed: ServerConnection.ClosedHandler? = nil) {
        connection.setHandlers(hello: hello, push: push, closed: closed)
    }
}

/// The connection's lease and reachability, read-only.
struct LeaseView: Sendable {
    fileprivate let connection: ServerConnection

    /// The server cannot have given this client's promises up unheard.
    func isValid() -> Bool { connection.leaseIsValid() }

    /// How long the lease still holds; nil if it does not.
    func remaining() -> TimeAmount? { connection.leaseRemaining() }

    /// The last request found no server, and none has answered since.
    var serverIsAway: Bool { connection.serverIsAway }
}

extension NamespaceChange {
    /// The directories the change touched, each once (a rename within one directory touches one).
    var changedDirectories: [FileStatus] {
        guard let other = otherDirectory, other.fid != directory.fid else { return [directory] }
        return [directory, other]
    }
}
