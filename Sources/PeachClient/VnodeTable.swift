import Glibc
import PeachProtocol

/// What the AFS-mode cache manager knows, behind its one `Mutex` (`AFSCacheManager.table`): the
/// vnodes by inode, the break counters, and how many vnodes the kernel references. A
/// `CachedVnode` is a reference cell shared with the open files that use it; its fields are read
/// and written only under this table's lock, as every method here is called.
struct VnodeTable {
    let connection: ServerConnection
    let disk: DiskCache
    let statistics: ClientStatistics
    /// `--offline-reads`.
    let offlineReads: Bool

    var vnodes: [Inode: CachedVnode] = [:]
    /// Per-FID break counters (also for FIDs not cached yet) and a generation bumped when every
    /// promise goes at once. A reply installs a promise only if neither moved while it was in flight.
    var breakCounts: [Inode: UInt64] = [:]
    var breakGeneration: UInt64 = 0
    /// Vnodes with at least one kernel reference (FUSE lookup count above 0).
    var referencedVnodes = 0

    init(connection: ServerConnection, disk: DiskCache, statistics: ClientStatistics, offlineReads: Bool) {
        self.connection = connection
        self.disk = disk
        self.statistics = statistics
        self.offlineReads = offlineReads
    }

    /// `--offline-reads`, and the server is away: cached files are served read-only, possibly stale.
    var servingOffline: Bool { offlineReads && connection.serverIsAway }

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
        vnode.callBackExpiry > Self.now() + Self.expiryMargin && connection.leaseIsValid()
    }

    /// What a reply's promise is checked against: it moves with every break of `inode`, and
    /// with every drop of all promises.
    func breakStamp(_ inode: Inode) -> UInt64 {
        breakGeneration &+ (breakCounts[inode] ?? 0)
    }

    /// Seconds the kernel may cache what it learns of `vnode`.
    func kernelTimeout(_ vnode: CachedVnode) -> Double {
        guard hasLivePromise(vnode) else { return 0 }
        return min(Double(vnode.callBackExpiry - Self.now() - Self.expiryMargin), Self.maximumKernelTimeout)
    }

    /// Records a status from the server and the promise that came with it, unless a break for the
    /// FID arrived while the request was in flight (`stamp` moved): then the status is used but
    /// not trusted.
    @discardableResult
    mutating func install(_ status: FileStatus, expiry: UInt64, stamp: UInt64) -> CachedVnode {
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

    /// Drops a break counter; bumping the generation keeps every stamp taken before it from
    /// matching again. Counters of FIDs never cached (breaks for them) are pruned in bulk the same
    /// way.
    mutating func forgetBreakCount(_ inode: Inode) {
        if breakCounts.removeValue(forKey: inode) != nil { breakGeneration &+= 1 }
        if breakCounts.count > 2 * vnodes.count + 1024 {
            breakCounts = [:]
            breakGeneration &+= 1
        }
    }

    /// An entry for `vnode` goes to the kernel: one more reference for it to forget.
    mutating func handedToKernel(_ vnode: CachedVnode) {
        if vnode.kernelReferences == 0 { referencedVnodes += 1 }
        vnode.handedToKernel()
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

    /// Removes every vnode the kernel holds no reference to and nothing here uses. Runs once per
    /// `unreferencedAllowance` new vnodes at most.
    mutating func dropUnreferencedVnodes() {
        for (inode, vnode) in vnodes where vnode.kernelReferences == 0 && vnode.openCount == 0 && !vnode.dirty
            && !keptForOffline(vnode)
            && inode != FID.root.vnode {
            vnodes[inode] = nil
            forgetBreakCount(inode)
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

/// What the kernel must forget when a promise on `vnode` is broken.
enum KernelInvalidation {
    /// Attributes and pages of the inode, and the names of a directory's entries.
    case inode(Inode, names: [String])
    /// A file open here keeps its pages and attributes, so descriptors opened before the
    /// change keep reading the old content; only the name is dropped, so that the next
    /// path lookup (an open, a stat) gets the new attributes.
    case entry(parent: Inode, name: String)
}
