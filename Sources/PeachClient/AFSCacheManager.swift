import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import PeachProtocol
import PeachSecurity

/// The AFS-style cache manager: whole files fetched on open and cached on local disk under
/// callbacks, stored whole on close; directories cached whole under callbacks; namespace
/// changes synchronous at the server. See docs/architecture.md.
public final class AFSCacheManager: CacheDesign, @unchecked Sendable {
    let core: ClientCore<OpenFile>
    let disk: DiskCache
    /// `--offline-reads`.
    let offlineReads: Bool

    /// Guards `vnodes`, `referencedVnodes`, `breakCounts`, `breakGeneration` and every CachedVnode's fields.
    let lock = NIOLock()
    var vnodes: [Inode: CachedVnode] = [:]
    /// Per-FID break counters (also for FIDs not cached yet) and a generation bumped when every
    /// promise goes at once. A reply installs a promise only if neither moved while it was in flight.
    var breakCounts: [Inode: UInt64] = [:]
    var breakGeneration: UInt64 = 0
    /// Vnodes with at least one kernel reference (FUSE lookup count above 0).
    var referencedVnodes = 0

    /// Callback breaks are handled here, off the connection's event loop and off FUSE threads.
    let breakQueue = DispatchQueue(label: "peach.afs.callbacks")

    /// Promises this close to expiry are not trusted.
    static let expiryMargin: UInt64 = 5
    /// The longest the kernel may cache attributes and names on our word.
    static let maximumKernelTimeout: Double = 3600

    /// - Parameters:
    ///   - retry: what a request does when the server is away (a mount: hard or soft).
    ///   - offlineReads: serve cached files read-only while the server is away (Coda-like).
    public init(server: ServerAddress, cacheDirectory: String, cacheSize: UInt64, tls: ClientTLS? = nil,
                retry: ServerConnection.RetryPolicy = .failFast, offlineReads: Bool = false,
                logger: Logger = Logger(label: "peach.afs")) throws {
        self.offlineReads = offlineReads
        disk = try DiskCache(directory: cacheDirectory, sizeLimit: cacheSize)
        let (clientID, epoch) = try disk.identity()
        core = ClientCore(design: .afs, server: server, clientID: clientID, epoch: epoch, tls: tls, retry: retry,
                          readsGiveUpWhenAway: offlineReads, logger: logger)
        statistics.update { $0.cacheBytes = disk.totalBytes }
        core.connection.setHandlers(
            hello: { [weak self] reply, isReconnect in
                if isReconnect || reply.callBacksLost { self?.dropAllPromises() }
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
                }
            },
            closed: { [weak self] in
                // A connection that broke may have missed breaks: trust nothing until we ask again.
                self?.dropAllPromises()
            })
    }

    public func start() throws {
        try core.start {
            let root = try fetchStatus(FID.root)
            lock.withLock { root.parent = root.inode }
        }
        statistics.update { $0.conflicts = disk.conflicts.list().count }
        storeLeftoverDirtyFiles()
    }

    /// What cannot be stored within the grace stays dirty in the cache, for the next start.
    public func shutdown() {
        core.shutdown(storing: lock.withLock { vnodes.values.filter { $0.dirty } }, fid: \.fid,
                      store: { try store($0, fd: nil) }, unsaved: "it stays in the cache for the next start") {
            let promised = lock.withLock { vnodes.values.filter { $0.callBackExpiry > 0 }.map(\.fid) }
            if !promised.isEmpty { _ = try? core.connection.call(.giveUpCallBacks(promised)) }
        }
        disk.releaseDirectory()
    }

    /// Files left dirty by an earlier run (a failed close, a crash): each is stored now if the
    /// server still has the version it was based on, else kept as a conflict (`store`).
    private func storeLeftoverDirtyFiles() {
        for entry in disk.dirtyEntries {
            do {
                let vnode: CachedVnode
                do {
                    vnode = try fetchStatus(entry.fid)
                } catch let error as FileSystemError where error.serverCode == .stale {
                    try keepAsConflict(entry.fid, vnode: nil, because: "the file was removed")
                    continue
                }
                lock.withLock {
                    vnode.dirty = true
                    vnode.status.size = entry.size
                }
                try store(vnode, fd: nil)
            } catch {
                core.logger.warning("a dirty file from an earlier run could not be stored", metadata: ["fid": "\(entry.fid)", "error": "\(error)"])
            }
        }
    }

    // MARK: Promises

    static func now() -> UInt64 { UInt64(time(nil)) }

    /// A promise is trusted until its expiry, and only while the lease holds: this client heard
    /// from the server recently enough that the server cannot have given the promise up unheard
    /// (a paused or cut-off client revalidates first). With `--offline-reads`, what is cached
    /// stands in for a promise while the server is away. Caller holds `lock`.
    func hasValidCallBack(_ vnode: CachedVnode) -> Bool {
        hasLivePromise(vnode) || servingOffline
    }

    /// A promise from the server that holds now. Caller holds `lock`.
    func hasLivePromise(_ vnode: CachedVnode) -> Bool {
        vnode.callBackExpiry > Self.now() + Self.expiryMargin && core.connection.leaseIsValid()
    }

    /// `--offline-reads`, and the server is away: cached files are served read-only, possibly stale.
    var servingOffline: Bool { offlineReads && core.connection.serverIsAway }

    /// Runs `body`; if it failed for want of the server and the mount now serves offline, runs
    /// it again, from the cache.
    func orOffline<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as FileSystemError where error.serverUnreachable && servingOffline {
            return try body()
        }
    }

    /// Caller holds `lock`.
    func breakStamp(_ inode: Inode) -> UInt64 {
        breakGeneration &+ (breakCounts[inode] ?? 0)
    }

    /// Caller holds `lock`. Seconds the kernel may cache what it learns of `vnode`.
    func kernelTimeout(_ vnode: CachedVnode) -> Double {
        guard hasLivePromise(vnode) else { return 0 }
        return min(Double(vnode.callBackExpiry - Self.now() - Self.expiryMargin), Self.maximumKernelTimeout)
    }

    /// Records a status from the server and the promise that came with it, unless a break for the
    /// FID arrived while the request was in flight (`stamp` moved): then the status is used but
    /// not trusted. Caller holds `lock`.
    @discardableResult
    func install(_ status: FileStatus, expiry: UInt64, stamp: UInt64) -> CachedVnode {
        let vnode: CachedVnode
        if let known = vnodes[status.fid.vnode], known.fid == status.fid {
            vnode = known
            if vnode.dirty {
                // The local copy is newer than the server's size and mtime until it is stored.
                var merged = status
                merged.size = vnode.status.size
                merged.mtime = vnode.status.mtime
                vnode.status = merged
            } else {
                vnode.status = status
            }
        } else {
            vnode = CachedVnode(status: status)
            vnodes[status.fid.vnode] = vnode
            if vnodes.count - referencedVnodes > Self.unreferencedAllowance { dropUnreferencedVnodes() }
            statistics.update { $0.vnodes = vnodes.count }
        }
        if vnode.isDirectory, vnode.listingVersion != status.dataVersion { vnode.listing = nil }
        if vnode.status.type == .symlink, vnode.status.dataVersion != status.dataVersion { vnode.symlinkTarget = nil }
        vnode.callBackExpiry = breakStamp(status.fid.vnode) == stamp ? expiry : 0
        return vnode
    }

    /// Handles a CallBack or InitCallBackState push: forgets the promises and returns what the
    /// kernel must be told.
    func receive(_ push: Push) -> [KernelInvalidation] {
        switch push {
        case .callBack(let fids, let reason):
            statistics.update { $0.callbacksReceived += fids.count }
            return lock.withLock {
                var invalidations: [KernelInvalidation] = []
                for fid in fids {
                    breakCounts[fid.vnode, default: 0] += 1
                    guard let vnode = vnodes[fid.vnode], vnode.fid == fid else { continue }
                    vnode.callBackExpiry = 0
                    vnode.kernelVersion = nil
                    invalidations.append(kernelInvalidation(for: vnode))
                    // A directory's names changed, unless only its status did: then the listing
                    // stays, and one status request revalidates it.
                    if reason != .setattr { vnode.listing = nil }
                }
                return invalidations
            }
        case .initCallBackState:
            dropAllPromises()
            return []
        }
    }

    /// Every promise is gone (the server said so, or we reconnected and may have missed breaks).
    func dropAllPromises() {
        let invalidations: [KernelInvalidation] = lock.withLock {
            breakGeneration &+= 1
            // Listings stay: each is revalidated by its data version on next use (one BulkStatus).
            return vnodes.values.map { vnode in
                vnode.callBackExpiry = 0
                vnode.kernelVersion = nil
                return kernelInvalidation(for: vnode)
            }
        }
        tellKernelLater(invalidations)
    }

    /// What the kernel must forget when a promise on `vnode` is broken.
    enum KernelInvalidation {
        /// Attributes and pages of the inode, and the names of a directory's entries.
        case inode(Inode, names: [String])
        /// A file open here keeps its pages and attributes, so descriptors opened before the
        /// change keep reading the old content; only the name is dropped, so that the next
        /// path lookup (an open, a stat) gets the new attributes.
        case entry(parent: Inode, name: String)
    }

    /// Caller holds `lock`.
    func kernelInvalidation(for vnode: CachedVnode) -> KernelInvalidation {
        if vnode.openCount > 0, let parent = vnode.parent, let name = vnode.name {
            return .entry(parent: parent, name: name)
        }
        return .inode(vnode.inode, names: vnode.listing.map { Array($0.keys) } ?? [])
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

    func vnode(_ inode: Inode) throws -> CachedVnode {
        guard let vnode = lock.withLock({ vnodes[inode] }) else { throw FileSystemError.stale }
        return vnode
    }

    /// FetchStatus: a fresh status and promise.
    @discardableResult
    func fetchStatus(_ fid: FID) throws -> CachedVnode {
        let stamp = lock.withLock { breakStamp(fid.vnode) }
        let (status, expiry) = try core.fetchStatus(fid)
        return lock.withLock { install(status, expiry: expiry, stamp: stamp) }
    }

    /// The vnode with a valid promise on its status, asking the server if needed. A file
    /// unlinked here while open is what this cache holds: the server no longer has it.
    func validated(_ inode: Inode) throws -> CachedVnode {
        let vnode = try vnode(inode)
        if lock.withLock({ hasValidCallBack(vnode) || vnode.removed }) { return vnode }
        return try fetchStatus(vnode.fid)
    }

    func attributes(_ vnode: CachedVnode) -> Attributes {
        lock.withLock { Attributes(status: vnode.status, timeout: kernelTimeout(vnode)) }
    }

    public func getAttributes(_ inode: Inode, handle: UInt64?) throws -> Attributes {
        do {
            return attributes(try orOffline { try validated(inode) })
        } catch let error as FileSystemError where error.errno == ESTALE {
            // Removed on the server (another client renamed over it or unlinked it) while open
            // here: like a file unlinked while open, its descriptors keep the cached copy.
            let vnode = try vnode(inode)
            let open = lock.withLock { () -> Bool in
                guard vnode.openCount > 0 else { return false }
                vnode.removed = true
                vnode.status.linkCount = 0
                return true
            }
            guard open else { throw error }
            return attributes(vnode)
        }
    }

    /// The kernel dropped `count` references: a vnode it no longer knows, with nothing open or
    /// dirty, goes, so the table is bounded by the kernel's inodes, not by every file ever seen.
    /// Its cached copy stays on disk (the disk cache is indexed by FID) and is revalidated by
    /// data version on the next lookup.
    public func forget(_ inode: Inode, count: UInt64) {
        lock.withLock {
            guard inode != FID.root.vnode, let vnode = vnodes[inode], vnode.kernelDropped(count) else { return }
            referencedVnodes -= 1
            guard vnode.openCount == 0, !vnode.dirty, !keptForOffline(vnode) else { return }
            vnodes[inode] = nil
            forgetBreakCount(inode)
            statistics.update { $0.vnodes = vnodes.count }
        }
    }

    /// Drops a break counter; bumping the generation keeps every stamp taken before it from
    /// matching again. Counters of FIDs never cached (breaks for them) are pruned in bulk the same
    /// way. Caller holds `lock`.
    func forgetBreakCount(_ inode: Inode) {
        if breakCounts.removeValue(forKey: inode) != nil { breakGeneration &+= 1 }
        if breakCounts.count > 2 * vnodes.count + 1024 {
            breakCounts = [:]
            breakGeneration &+= 1
        }
    }

    /// An entry for `vnode` goes to the kernel: one more reference for it to forget. Caller holds `lock`.
    func handedToKernel(_ vnode: CachedVnode) {
        if vnode.kernelReferences == 0 { referencedVnodes += 1 }
        vnode.handedToKernel()
    }

    /// Vnodes the kernel was never given (statuses prefetched for `ls -l`, objects of namespace
    /// replies) are kept up to this many; past it they go, as forgotten ones do.
    static let unreferencedAllowance = 4096

    /// With `--offline-reads`, a vnode whose data is cached (a file's copy, a directory's listing,
    /// a link's target) stays when the kernel forgets it: its status is what an offline lookup
    /// answers with. Memory then grows with what the cache holds, not with the kernel's inodes.
    /// Caller holds `lock`.
    func keptForOffline(_ vnode: CachedVnode) -> Bool {
        guard offlineReads else { return false }
        switch vnode.status.type {
        case .directory: return vnode.listing != nil
        case .symlink: return vnode.symlinkTarget != nil
        default: return disk.entry(vnode.fid) != nil
        }
    }

    /// Removes every vnode the kernel holds no reference to and nothing here uses. Runs once per
    /// `unreferencedAllowance` new vnodes at most. Caller holds `lock`.
    func dropUnreferencedVnodes() {
        for (inode, vnode) in vnodes where vnode.kernelReferences == 0 && vnode.openCount == 0 && !vnode.dirty
            && !keptForOffline(vnode)
            && inode != FID.root.vnode {
            vnodes[inode] = nil
            forgetBreakCount(inode)
        }
    }

    // MARK: Control

    public func callBacks() -> [CallBackInfo] {
        lock.withLock {
            vnodes.values.filter { hasLivePromise($0) }.map {
                CallBackInfo(fid: $0.fid.description, path: path(of: $0), expiresAt: $0.callBackExpiry)
            }.sorted { ($0.path ?? "~") < ($1.path ?? "~") }
        }
    }

    public func conflicts() -> [Conflict] { disk.conflicts.list() }

    /// The path of `vnode` inside the mount, where the names that reached it are known.
    /// Caller holds `lock`.
    func path(of vnode: CachedVnode) -> String? {
        var components: [String] = []
        var current = vnode
        for _ in 0..<256 {
            if current.fid == FID.root { return "/" + components.reversed().joined(separator: "/") }
            guard let name = current.name, let parent = current.parent, let next = vnodes[parent] else { return nil }
            components.append(name)
            current = next
        }
        return nil
    }

    public func flushCachedCopy(_ inode: Inode) throws {
        let vnode = try vnode(inode)
        if lock.withLock({ vnode.dirty }) { try store(vnode, fd: nil) }
        // An open file keeps its copy: its descriptors read and write it (OpenAFS answers EBUSY too).
        if lock.withLock({ vnode.openCount > 0 }) { throw FileSystemError(EBUSY, "the file is open") }
        vnode.io.withLock {
            lock.withLock {
                vnode.listing = nil
                vnode.symlinkTarget = nil
                vnode.kernelVersion = nil
            }
            disk.remove(vnode.fid)
        }
        statistics.update { $0.cacheBytes = disk.totalBytes }
        core.tellKernelLater { $0.invalidateInode(inode) }
    }
}
