import Glibc
import PeachProtocol

/// What the AFS-mode cache manager knows, behind its one `Mutex` (`AFSCacheManager.table`): the
/// vnodes by inode, the numbered breaks, and how many vnodes the kernel references. Each
/// `CachedVnode` is a value it owns: callers name one by inode or FID, read a copy, and change
/// it through `update` and the methods here, all under the lock.
struct CachedVnodeTable {
    let lease: LeaseView
    let disk: DiskCache
    let statistics: ClientStatistics
    /// `--offline-reads`.
    let offlineReads: Bool

    /// The vnodes, by inode; an open or dirty one whose inode a new FID took stays, detached,
    /// until its last close and its store (a store behind a close, `fs sync`, unmount).
    private var nodes = NodesByInode<CachedVnode>()
    /// The vnodes the kernel can reach, by inode.
    var vnodes: [Inode: CachedVnode] { nodes.byInode }
    /// Breaks, numbered as they arrive: the number of the latest break of each FID (also of FIDs
    /// not cached yet), and a floor that stands for every break forgotten or applied to all
    /// promises at once. A reply installs a promise only if no break for its FID came after the
    /// stamp its request took before it left (`BreakStamp`).
    private var breaksSeen: UInt64 = 0
    private var latestBreak: [Inode: UInt64] = [:]
    private var everyPromiseBrokenAt: UInt64 = 0
    /// Dirty copies left by an earlier run and not stored yet: a store of one, even from an open
    /// descriptor (a read-only open and close), sends the version it was based on, so that it
    /// never overwrites a newer version as a copy written in this run may (`store`).
    var leftovers: Set<FID> = []
    /// Vnodes with at least one kernel reference (FUSE lookup count above 0).
    var referencedVnodes = 0

    init(lease: LeaseView, disk: DiskCache, statistics: ClientStatistics, offlineReads: Bool) {
        self.lease = lease
        self.disk = disk
        self.statistics = statistics
        self.offlineReads = offlineReads
    }

    /// `--offline-reads`, and the server is away: cached files are served read-only, possibly stale.
    var servingOffline: Bool { offlineReads && lease.serverIsAway }

    /// Promises this close to expiry are not trusted.
    static let expiryMargin: UInt64 = 5

    /// The longest the kernel may cache attributes and names on our word.
    static let maximumKernelTimeout: Double = 3600

    /// Vnodes the kernel was never given (statuses prefetched for `ls -l`, objects of namespace
    /// replies) are kept up to this many; past it they go, as forgotten ones do.
    static let unreferencedAllowance = 4096

    static func now() -> UInt64 { UInt64(time(nil)) }

    /// A promise is trusted until its expiry, and only while the lease holds: this client heard
    /// from the server recently enough that the server cannot have given the promise up unheard
    /// (a paused or cut-off client revalidates first). With `--offline-reads`, what is cached
    /// stands in for a promise while the server is away.
    func hasValidCallBack(_ vnode: CachedVnode) -> Bool {
        hasLivePromise(vnode) || servingOffline
    }

    /// A promise from the server that holds now.
    func hasLivePromise(_ vnode: CachedVnode) -> Bool {
        vnode.callBackExpiry > Self.now() + Self.expiryMargin && lease.isValid()
    }

    /// Taken before a request leaves; the statuses its reply carries are trusted only if no
    /// break for them arrived since. One stamp covers every FID, those the request names and
    /// those only its reply will (a new object, a link's or a rename's target).
    func stamp() -> BreakStamp { BreakStamp(breaksSeen: breaksSeen) }

    /// A break of `inode`'s promise arrived after `stamp` was taken.
    func brokenSince(_ stamp: BreakStamp, _ inode: Inode) -> Bool {
        max(latestBreak[inode] ?? 0, everyPromiseBrokenAt) > stamp.breaksSeen
    }

    /// A break for `inode` arrived.
    mutating func noteBreak(_ inode: Inode) {
        breaksSeen += 1
        latestBreak[inode] = breaksSeen
    }

    /// Every promise went at once (the server said so, or a reconnect may have missed breaks).
    mutating func noteEveryPromiseBroken() {
        breaksSeen += 1
        everyPromiseBrokenAt = breaksSeen
    }

    /// Seconds the kernel may cache what it learns of `vnode`.
    func kernelTimeout(_ vnode: CachedVnode) -> Double {
        guard hasLivePromise(vnode) else { return 0 }
        return min(Double(vnode.callBackExpiry - Self.now() - Self.expiryMargin), Self.maximumKernelTimeout)
    }

    /// The vnode of `fid`, where the kernel reaches it or where its open files do.
    subscript(fid fid: FID) -> CachedVnode? { nodes[fid: fid] }

    /// The vnode of `fid`; ESTALE if none is known.
    func vnode(_ fid: FID) throws -> CachedVnode { try nodes.known(fid) }

    /// Changes the vnode of `fid` in place; nil if none is known.
    @discardableResult
    mutating func update<R>(_ fid: FID, _ change: (inout CachedVnode) throws -> R) rethrows -> R? {
        try nodes.update(fid, change)
    }

    /// As `update`, for one that must be known: ESTALE if not.
    mutating func updateKnown<R>(_ fid: FID, _ change: (inout CachedVnode) throws -> R) throws -> R {
        try nodes.updateKnown(fid, change)
    }

    /// Changes every vnode the kernel can reach.
    mutating func updateAll(_ change: (inout CachedVnode) -> Void) {
        // By index: walking the keys while changing the values would copy the dictionary.
        for index in nodes.byInode.values.indices { change(&nodes.byInode.values[index]) }
        for index in nodes.detached.values.indices { change(&nodes.detached.values[index]) }
    }

    /// The listing of the directory `fid`, if cached under a promise that holds.
    func validListing(_ fid: FID) -> [String: DirectoryEntry]? {
        self[fid: fid].flatMap { hasValidCallBack($0) ? $0.listing : nil }
    }

    /// Every vnode: those the kernel reaches and those only open files do.
    var allVnodes: [CachedVnode] { nodes.all }

    /// Records a status from the server and the promise that came with it, unless a break for the
    /// FID arrived while the request was in flight (after `stamp`): then the status is used but
    /// not trusted. Returns the vnode as it now is.
    @discardableResult
    mutating func install(_ status: FileStatus, expiry: UInt64, stamp: BreakStamp) -> CachedVnode {
        let fid = status.fid
        if self[fid: fid] == nil {
            let disk = disk
            nodes.place(CachedVnode(status: status), keepingReplacedIf: { $0.openCount > 0 || disk.entry($0.fid)?.dirty == true })
            if vnodes.count - referencedVnodes > Self.unreferencedAllowance { dropUnreferencedVnodes(keeping: fid.vnode) }
            statistics.update { $0.vnodes = vnodes.count }
        }
        let dirty = isDirty(fid)
        let trusted = !brokenSince(stamp, fid.vnode)
        return update(fid) { vnode in
            let old = vnode.status
            if dirty {
                // The local copy is newer than the server's size and mtime until it is stored.
                vnode.status = status
                vnode.status.size = old.size
                vnode.status.mtime = old.mtime
            } else {
                vnode.status = status
            }
            if vnode.isDirectory, vnode.listingVersion != status.dataVersion { vnode.listing = nil }
            if status.type == .symlink, old.dataVersion != status.dataVersion { vnode.symlinkTarget = nil }
            vnode.callBackExpiry = trusted ? expiry : 0
            return vnode
        }!
    }

    /// The cached copy of `vnode` has local changes not stored yet. The disk cache holds this,
    /// and its index records it before the first change reaches the copy.
    func isDirty(_ fid: FID) -> Bool { disk.entry(fid)?.dirty ?? false }

    /// No status of `fid` that may be trusted now is cached.
    func lacksValidStatus(_ fid: FID) -> Bool {
        vnodes[fid.vnode].map { $0.fid != fid || !hasValidCallBack($0) } ?? true
    }

    /// What the kernel must forget when the promise on `vnode` goes.
    func kernelInvalidation(for vnode: CachedVnode) -> KernelInvalidation {
        if vnode.openCount > 0, let parent = vnode.parent, let name = vnode.name {
            return .entry(parent: parent, name: name)
        }
        return .inode(vnode.inode, names: vnode.listing.map { Array($0.keys) } ?? [])
    }

    /// Drops the record of `inode`'s latest break. The floor rises to it, so that no stamp taken
    /// before that break can match again. Records of FIDs never cached (breaks for them) are
    /// pruned in bulk the same way.
    mutating func forgetBreaks(of inode: Inode) {
        if let latest = latestBreak.removeValue(forKey: inode) { everyPromiseBrokenAt = max(everyPromiseBrokenAt, latest) }
        if latestBreak.count > 2 * vnodes.count + 1024 {
            latestBreak = [:]
            everyPromiseBrokenAt = breaksSeen
        }
    }

    /// An entry for the vnode of `fid`, reached as `name` in `parent`, goes to the kernel: one
    /// more reference for it to forget. Returns the vnode.
    mutating func handedToKernel(_ fid: FID, parent: Inode, name: String) throws -> CachedVnode {
        guard let vnode = update(fid, { vnode in
            vnode.handedToKernel()
            vnode.parent = parent
            vnode.name = name
            return vnode
        }) else { throw FileSystemError.stale }
        if vnode.kernelReferences == 1 { referencedVnodes += 1 }
        return vnode
    }

    /// The kernel dropped `count` references to `inode`: a vnode it no longer knows, with nothing
    /// open or dirty, goes. Returns whether it went.
    mutating func kernelForgot(_ inode: Inode, count: UInt64) -> Bool {
        guard inode != FID.root.vnode, nodes.byInode[inode]?.kernelDropped(count) == true, let vnode = vnodes[inode] else { return false }
        referencedVnodes -= 1
        guard vnode.openCount == 0, !isDirty(vnode.fid), !keptForOffline(vnode) else { return false }
        remove(inode)
        return true
    }

    /// A descriptor of `fid` closed. A vnode the kernel forgot while it was open (or that only
    /// open files reached) goes with its last close. Returns whether it was removed on the
    /// server while open, so its copy can go too.
    mutating func closed(_ fid: FID) -> Bool {
        guard let vnode = update(fid, { vnode in
            vnode.openCount -= 1
            return vnode
        }) else { return false }
        guard vnode.openCount == 0 else { return false }
        if nodes.detached[fid] != nil {
            stored(fid)
        } else if vnode.forgotten, !isDirty(fid), vnode.inode != FID.root.vnode {
            remove(vnode.inode)
        }
        return vnode.removed
    }

    /// A detached vnode goes once nothing holds it: no open file, nothing left to store.
    mutating func stored(_ fid: FID) {
        guard let vnode = nodes.detached[fid], vnode.openCount == 0, !isDirty(fid) else { return }
        nodes.detached[fid] = nil
    }

    private mutating func remove(_ inode: Inode) {
        nodes.byInode[inode] = nil
        forgetBreaks(of: inode)
        statistics.update { $0.vnodes = vnodes.count }
    }

    /// With `--offline-reads`, a vnode whose data is cached (a file's copy, a directory's listing,
    /// a link's target) stays when the kernel forgets it: its status is what an offline lookup
    /// answers with. Memory then grows with what the cache holds, not with the kernel's inodes.
    func keptForOffline(_ vnode: CachedVnode) -> Bool {
        guard offlineReads else { return false }
        switch vnode.status.type {
        case .directory: return vnode.listing != nil
        case .symlink: return vnode.symlinkTarget != nil
        default: return disk.entry(vnode.fid) != nil
        }
    }

    /// Removes every vnode the kernel holds no reference to and nothing here uses, but `kept`
    /// (the one being installed, which its caller is about to use). Runs once per
    /// `unreferencedAllowance` new vnodes at most.
    mutating func dropUnreferencedVnodes(keeping kept: Inode) {
        for (inode, vnode) in vnodes where vnode.kernelReferences == 0 && vnode.openCount == 0 && !isDirty(vnode.fid)
            && !keptForOffline(vnode)
            && inode != FID.root.vnode && inode != kept {
            nodes.byInode[inode] = nil
            forgetBreaks(of: inode)
        }
    }

    /// The path of `vnode` inside the mount, where the names that reached it are known: the
    /// lookups that reached it, or else, with `searchingListings`, a cached listing that names it
    /// (a file whose status came with its siblings', or that was cached before this mount began,
    /// was never looked up). That search scans every listing: for `fs` reports, not requests.
    func path(of vnode: CachedVnode, searchingListings: Bool = false) -> String? {
        var components: [String] = []
        var current = vnode
        for _ in 0..<256 {
            if current.fid == FID.root { return "/" + components.reversed().joined(separator: "/") }
            let known = current.name.flatMap { name in current.parent.map { ($0, name) } }
            guard let (parent, name) = known ?? (searchingListings ? nameInListings(current) : nil),
                  let next = vnodes[parent] else { return nil }
            components.append(name)
            current = next
        }
        return nil
    }

    /// A directory whose cached listing names `vnode`, and the name.
    private func nameInListings(_ vnode: CachedVnode) -> (Inode, String)? {
        for (inode, directory) in vnodes where directory.fid != vnode.fid {
            if let name = directory.listing?.first(where: { $0.value.fid == vnode.fid })?.key { return (inode, name) }
        }
        return nil
    }
}

/// The breaks a client had seen when a request left: what its reply's promises are checked against.
struct BreakStamp: Sendable {
    fileprivate let breaksSeen: UInt64
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
