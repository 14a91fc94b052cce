import Dispatch
import Logging
import NIOCore
import PeachProtocol
import PeachSecurity
import Synchronization

/// The half of a cache manager that does not depend on the design, as in Linux's kAFS, where one
/// client core serves every volume: the connection (with its retries, lease and numbering), the
/// open-file handles, the kernel notifier, the statistics, the start and unmount sequence, and one
/// pipeline for every namespace change: stamp what the design caches, send the request, commit
/// the reply.
///
/// A design (`CacheDesign`) adds its two policies: what keeps a cached status valid (callbacks in
/// AFS mode, attribute timeouts in NFS mode) and where file data lives (whole files on disk, or
/// blocks in memory). See docs/architecture.md.
final class ClientCore<OpenHandle: AnyObject & Sendable>: Sendable {
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
    func shutdown<Dirty>(storing dirty: [Dirty], fid: (Dirty) -> FID, store: (Dirty) throws -> Void,
                         unsaved: String, farewell: () -> Void = {}) {
        connection.beginShutdown(within: Self.shutdownGrace)
        for file in dirty {
            do { try store(file) } catch {
                logger.error("a dirty file could not be stored at unmount; \(unsaved)",
                             metadata: ["fid": "\(fid(file))", "error": "\(error)"])
            }
        }
        farewell()
        connection.close()
    }

    // MARK: Requests

    /// The one pipeline of every namespace change (create, mkdir, symlink, link, remove, rmdir,
    /// rename): `stamp` records, before the request leaves, what lets the design tell a change
    /// made by someone else meanwhile (AFS mode: the break counters; NFS mode: nothing); the
    /// request goes through the connection (numbered, so a retry is answered from the server's
    /// record, never run twice); `commit` applies the reply to what the design caches.
    func change<Stamp>(_ request: Request, stamp: () -> Stamp,
                       commit: (_ change: NamespaceChange, _ expiry: UInt64, _ stamp: Stamp) -> Void) throws -> NamespaceChange {
        let stamped = stamp()
        guard case .namespace(let change, let expiry) = try connection.call(request) else { throw FileSystemError.unexpectedReply }
        commit(change, expiry, stamped)
        return change
    }

    /// StoreStatus (chmod, chown, utime, truncate): the new status and, in AFS mode, its promise.
    func storeStatus(_ fid: FID, _ changes: SetAttributes) throws -> (FileStatus, UInt64) {
        guard case .status(let status, let expiry) = try connection.call(.storeStatus(fid, changes)) else { throw FileSystemError.unexpectedReply }
        return (status, expiry)
    }

    /// FetchStatus (AFS) or GETATTR (NFS): one call, one meaning since protocol 3.
    func fetchStatus(_ fid: FID) throws -> (FileStatus, UInt64) {
        guard case .status(let status, let expiry) = try connection.call(.fetchStatus(fid)) else { throw FileSystemError.unexpectedReply }
        return (status, expiry)
    }

    func volumeStatus() throws -> VolumeStatus {
        guard case .volumeStatus(let status) = try connection.call(.getVolumeStatus) else { throw FileSystemError.unexpectedReply }
        return status
    }
}

extension NamespaceChange {
    /// The directories the change touched, each once (a rename within one directory touches one).
    var changedDirectories: [FileStatus] {
        guard let other = otherDirectory, other.fid != directory.fid else { return [directory] }
        return [directory, other]
    }
}
