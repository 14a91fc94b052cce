import Foundation
import Logging
import NIOCore
import PeachProtocol
import PeachSecurity
import PeachSupport
import Synchronization

/// The AFS-style cache manager: whole files fetched on open and cached on local disk under
/// callbacks, stored whole on close; directories cached whole under callbacks; namespace
/// changes synchronous at the server. See docs/architecture.md.
public final class AFSCacheManager: CacheDesign, Sendable {
    let core: ClientCore<OpenFile>
    let disk: DiskCache
    /// `--offline-reads`.
    let offlineReads: Bool

    /// Every vnode and the numbered breaks, behind one lock. Lock order: a vnode's `io`, then this one,
    /// never the reverse.
    let table: Mutex<CachedVnodeTable>

    /// Callback breaks are handled here, off the connection's event loop and off FUSE threads.
    let breakQueue = DispatchQueue(label: "peach.afs.callbacks")
    /// Stores after close, when the mount asks for them (`--store-behind`, `peach fs storebehind`).
    let storeBehind: StoreBehind

    /// - Parameters:
    ///   - retry: what a request does when the server is away (a mount: hard or soft).
    ///   - offlineReads: serve cached files read-only while the server is away (Coda-like).
    ///   - storeBehind: a close returns once the data is in the cache; the store follows.
    public init(server: ServerAddress, cacheDirectory: String, cacheSize: UInt64, tls: ClientTLS? = nil,
                retry: ServerConnection.RetryPolicy = .failFast, offlineReads: Bool = false, storeBehind: Bool = false,
                logger: Logger = .noticesOnly("peach.afs")) throws {
        self.offlineReads = offlineReads
        self.storeBehind = StoreBehind(enabled: storeBehind)
        disk = try DiskCache(directory: cacheDirectory, sizeLimit: cacheSize)
        let (clientID, epoch) = try disk.identity()
        core = ClientCore(design: .afs, server: server, clientID: clientID, epoch: epoch, tls: tls, retry: retry,
                          readsGiveUpWhenAway: offlineReads, logger: logger)
        table = Mutex(CachedVnodeTable(lease: core.lease, disk: disk, statistics: core.statistics, offlineReads: offlineReads))
        statistics.update { $0.cacheBytes = disk.totalBytes }
        statistics.metrics.limitBytes.record(Int64(clamping: cacheSize))
        core.setHandlers(
            hello: { [weak self] reply, leaseLapsed in
                if leaseLapsed || reply.callBacksLost { self?.dropAllPromises() }
            },
            push: { [weak self] push, ack in
                guard let self else { return ack() }
                self.breakQueue.async {
                    // Forget the promises, drop the kernel's cached attributes (attribute-only: it
                    // takes no lock a request holds), acknowledge, and only then tell the kernel
                    // the rest: an entry invalidation waits for the directory's lock, which a
                    // create of our own may hold while it waits for another client's
                    // acknowledgement. So a stat after the writer's close returned sees the change.
                    let invalidations = self.receive(push)
                    if let notifier = self.notifier {
                        for case .inode(let inode, _) in invalidations { notifier.invalidateAttributes(inode) }
                    }
                    ack()
                    self.tellKernelLater(invalidations)
                    if case .callBack(let fids, .remove) = push {
                        // Disk work: off the break queue, which must never wait for the disk.
                        DispatchQueue.global(qos: .utility).async { self.dropRemovedCopies(fids) }
                    }
                }
            },
            closed: { [weak self] in self?.keepPromisesWhileLeaseHolds() })
    }

    public func start() throws {
        try core.start {
            let root = try fetchStatus(FID.root)
            table.withLock { t in t.update(root.fid) { $0.parent = $0.inode } }
        }
        statistics.update { $0.conflicts = disk.conflicts.list().count }
        storeLeftoverDirtyFiles()
    }

    /// What cannot be stored within the grace stays dirty in the cache, for the next start.
    public func shutdown() {
        storeBehind.stop()
        core.shutdown(storing: table.withLock { t in t.allVnodes.map(\.fid).filter(t.isDirty) },
                      store: { try store($0, fd: nil) }, unsaved: "it stays in the cache for the next start") {
            // Every promise the server recorded, including those this side never trusted (a
            // reply that raced a break) and those broken and not yet acknowledged.
            _ = try? perform(.giveUpAllCallBacks) { _, _ in }
        }
        disk.releaseDirectory()
    }

    /// Files left dirty by an earlier run (a failed close, a crash): each is stored now if the
    /// server still has the version it was based on, else kept as a conflict (`store`).
    private func storeLeftoverDirtyFiles() {
        let leftovers = disk.dirtyEntries
        table.withLock { t in t.leftovers = Set(leftovers.map(\.fid)) }
        for entry in leftovers {
            do {
                do {
                    try fetchStatus(entry.fid)
                } catch let error as FileSystemError where error.serverCode == .stale {
                    try keepAsConflict(entry.fid, because: "the file was removed")
                    continue
                }
                table.withLock { t in t.update(entry.fid) { $0.status.size = entry.size } }
                try store(entry.fid, fd: nil)
            } catch {
                core.logger.warning("a dirty file from an earlier run could not be stored", metadata: ["fid": "\(entry.fid)", "error": "\(error)"])
            }
        }
    }

    // MARK: Promises

    /// `--offline-reads`, and the server is away: cached files are served read-only, possibly stale.
    var servingOffline: Bool { offlineReads && core.lease.serverIsAway }

    /// Runs `body`; if it failed for want of the server and the mount now serves offline, runs
    /// it again, from the cache.
    func orOffline<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as FileSystemError where error.serverUnreachable && servingOffline {
            return try body()
        }
    }

    /// Handles a CallBack or InitCallBackState push: forgets the promises and returns what the
    /// kernel must be told.
    func receive(_ push: Push) -> [KernelInvalidation] {
        switch push {
        case .callBack(let fids, let reason):
            statistics.update { $0.callbacksReceived += fids.count }
            return table.withLock { t in
                var invalidations: [KernelInvalidation] = []
                for fid in fids {
                    t.noteBreak(fid.vnode)
                    guard let vnode = t.update(fid, { vnode in
                        vnode.callBackExpiry = 0
                        vnode.kernelVersion = nil
                        return vnode
                    }) else { continue }
                    invalidations.append(t.kernelInvalidation(for: vnode))
                    // A directory's names changed, unless only its status did: then the listing
                    // stays, and one status request revalidates it.
                    if reason != .setattr { t.update(fid) { $0.listing = nil } }
                }
                return invalidations
            }
        case .initCallBackState:
            dropAllPromises()
            return []
        }
    }

    /// Files another client removed (a break for a remove): each clean copy nothing holds open
    /// leaves the disk cache now, not at eviction. If another name still leads to the file, its
    /// next open fetches it again.
    func dropRemovedCopies(_ fids: [FID]) {
        let dropped = table.withLock { t -> Int in
            var count = 0
            for fid in fids {
                if let vnode = t[fid: fid], vnode.openCount > 0 { continue }
                if t.disk.removeIfClean(fid) { count += 1 }
            }
            return count
        }
        if dropped > 0 { statistics.update { $0.cacheBytes = disk.totalBytes } }
    }

    /// Every promise is gone (the server said so, or we reconnected and may have missed breaks).
    func dropAllPromises() {
        let invalidations: [KernelInvalidation] = table.withLock { t in
            t.noteEveryPromiseBroken()
            // Listings stay: each is revalidated by its data version on next use (one BulkStatus).
            t.updateAll { vnode in
                vnode.callBackExpiry = 0
                vnode.kernelVersion = nil
            }
            return t.allVnodes.map { t.kernelInvalidation(for: $0) }
        }
        tellKernelLater(invalidations)
    }

    /// The connection closed: promises still hold until the lease runs out (the server waits
    /// that long for this client before completing a change that breaks one; docs/consistency.md),
    /// so cached files are served through an outage. When the lease ends without a new answer
    /// from the server, the kernel's cached attributes, names and pages are dropped too.
    func keepPromisesWhileLeaseHolds() {
        guard let remaining = core.lease.remaining() else { return dropAllPromises() }
        DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(Int(remaining.nanoseconds))) { [weak self] in
            guard let self, !self.core.lease.isValid() else { return }
            self.dropAllPromises()
        }
    }

    /// Sends `invalidations` to the kernel from the core's kernel queue.
    func tellKernelLater(_ invalidations: [KernelInvalidation]) {
        guard !invalidations.isEmpty else { return }
        core.tellKernelLater { notifier in
            for invalidation in invalidations {
                switch invalidation {
                case .inode(let inode, let names):
                    notifier.invalidateInode(inode)
                    for name in names { notifier.invalidateEntry(parent: inode, name: name) }
                case .entry(let parent, let name):
                    notifier.invalidateEntry(parent: parent, name: name)
                }
            }
        }
    }

    // MARK: Status

    /// The vnode the kernel reaches as `inode`, as it is now.
    func vnode(_ inode: Inode) throws -> CachedVnode {
        guard let vnode = table.withLock({ t in t.vnodes[inode] }) else { throw FileSystemError.stale }
        return vnode
    }

    /// The vnode of `fid`, as it is now.
    func vnode(_ fid: FID) throws -> CachedVnode {
        try table.withLock { t in try t.vnode(fid) }
    }

    // MARK: The pipeline

    func stampBeforeSending() -> BreakStamp { table.withLock { t in t.stamp() } }

    /// `request` through the pipeline, every status of its reply installed (`CachedVnodeTable.apply`).
    @discardableResult
    func call(_ request: Request) throws -> Reply {
        try perform(request) { reply, stamp in
            try table.withLock { t in try t.apply(reply, for: request, stamp: stamp) }
            return reply
        }
    }

    /// FetchStatus: a fresh status and promise.
    @discardableResult
    func fetchStatus(_ fid: FID) throws -> CachedVnode {
        try perform(.fetchStatus(fid)) { reply, stamp in
            guard case .status(let status, let expiry) = reply else { throw FileSystemError.unexpectedReply }
            return table.withLock { t in t.install(status, expiry: expiry, stamp: stamp) }
        }
    }

    /// The vnode with a valid promise on its status, asking the server if needed. A file
    /// unlinked here while open is what this cache holds: the server no longer has it.
    func validated(_ inode: Inode) throws -> CachedVnode {
        let vnode = try vnode(inode)
        if table.withLock({ t in t.hasValidCallBack(vnode) || vnode.removed }) { return vnode }
        return try fetchStatus(vnode.fid)
    }

    /// What the kernel may cache of the vnode of `fid` as it is now.
    func attributes(_ fid: FID) throws -> Attributes {
        try table.withLock { t in
            let vnode = try t.vnode(fid)
            return Attributes(status: vnode.status, timeout: t.kernelTimeout(vnode))
        }
    }

    public func getAttributes(_ inode: Inode, handle: UInt64?) throws -> Attributes {
        do {
            return try attributes(try orOffline { try validated(inode) }.fid)
        } catch let error as FileSystemError where error.errno == ESTALE {
            // Removed on the server (another client renamed over it or unlinked it) while open
            // here: like a file unlinked while open, its descriptors keep the cached copy.
            let fid = try vnode(inode).fid
            let open = table.withLock { t in
                t.update(fid) { vnode -> Bool in
                    guard vnode.openCount > 0 else { return false }
                    vnode.removed = true
                    vnode.status.linkCount = 0
                    return true
                } ?? false
            }
            guard open else { throw error }
            return try attributes(fid)
        }
    }

    /// The kernel dropped `count` references: a vnode it no longer knows, with nothing open or
    /// dirty, goes, so the table is bounded by the kernel's inodes, not by every file ever seen.
    /// Its cached copy stays on disk (the disk cache is indexed by FID) and is revalidated by
    /// data version on the next lookup.
    public func forget(_ inode: Inode, count: UInt64) {
        table.withLock { t in _ = t.kernelForgot(inode, count: count) }
    }

    // MARK: Control

    public func callBacks() -> [CallBackInfo] {
        table.withLock { t in
            t.allVnodes.filter { t.hasLivePromise($0) }.map {
                CallBackInfo(fid: $0.fid.description, path: t.path(of: $0, searchingListings: true), expiresAt: $0.callBackExpiry)
            }.sorted { ($0.path ?? "~") < ($1.path ?? "~") }
        }
    }

    public func conflicts() -> [Conflict] { disk.conflicts.list() }

    public func flushCachedCopy(_ inode: Inode) throws {
        let vnode = try vnode(inode)
        if table.withLock({ t in t.isDirty(vnode.fid) }) { try store(vnode.fid, fd: nil) }
        // An open file keeps its copy: its descriptors read and write it (OpenAFS answers EBUSY too).
        if table.withLock({ t in t[fid: vnode.fid]?.openCount ?? 0 > 0 }) { throw FileSystemError(EBUSY, "the file is open") }
        vnode.io.withLock {
            table.withLock { t in
                t.update(vnode.fid) { vnode in
                    vnode.listing = nil
                    vnode.symlinkTarget = nil
                    vnode.kernelVersion = nil
                }
            }
            disk.remove(vnode.fid)
        }
        statistics.update { $0.cacheBytes = disk.totalBytes }
        core.tellKernelLater { $0.invalidateInode(inode) }
    }
}
