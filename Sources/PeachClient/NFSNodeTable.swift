import Glibc
import PeachProtocol

/// What the NFS-style cache manager knows, behind its one `Mutex` (`NFSCacheManager.table`): a
/// node per inode and the clean block cache. Each `NFSNode` is a value it owns: callers name one
/// by inode or FID, read a copy, and change it through `update` and the methods here, all under
/// the lock.
struct NFSNodeTable {
    let core: ClientCore<NFSOpenFile>
    let options: NFSOptions
    /// The nodes, by inode; an open or dirty one whose inode a new FID took stays, detached,
    /// until its last close and until its unsent writes are sent.
    private var held = NodesByInode<NFSNode>()
    /// The nodes the kernel can reach, by inode.
    var nodes: [Inode: NFSNode] { held.byInode }
    var blocks: LRUCache<BlockKey, [UInt8]>

    init(core: ClientCore<NFSOpenFile>, options: NFSOptions) {
        self.core = core
        self.options = options
        blocks = LRUCache(capacity: Int(clamping: options.cacheSize))
    }

    var statistics: ClientStatistics { core.statistics }
    var notifier: KernelNotifier? { core.notifier }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// The node of `fid`, where the kernel reaches it or where its open files do.
    subscript(fid fid: FID) -> NFSNode? { held[fid: fid] }

    /// The node of `fid`; ESTALE if none is known.
    func node(_ fid: FID) throws -> NFSNode { try held.known(fid) }

    /// Changes the node of `fid` in place; nil if none is known.
    @discardableResult
    mutating func update<R>(_ fid: FID, _ change: (inout NFSNode) throws -> R) rethrows -> R? {
        try held.update(fid, change)
    }

    /// As `update`, for one that must be known: ESTALE if not.
    mutating func updateKnown<R>(_ fid: FID, _ change: (inout NFSNode) throws -> R) throws -> R {
        try held.updateKnown(fid, change)
    }

    /// Every node: those the kernel reaches and those only open files do.
    var allNodes: [NFSNode] { held.all }

    /// The node's attributes are still within their timeout.
    func isFresh(_ node: NFSNode) -> Bool {
        Self.now() - node.fetchedAt < node.timeout
    }

    /// Seconds the kernel may keep what it learns of `node`.
    func remainingTimeout(_ node: NFSNode) -> Double {
        max(0, node.timeout - (Self.now() - node.fetchedAt))
    }

    /// Records attributes from the server. When the data changed behind our back the node's
    /// cached blocks, listing and names go, the timeout restarts at min, and the kernel is told;
    /// when unchanged, the timeout doubles up to max. `ownChange` is the data version our own
    /// request moved the file from (WRITE, or a namespace change): that is no one else's change.
    /// Returns the node as it now is.
    @discardableResult
    mutating func apply(_ status: FileStatus, ownChangeFrom: UInt64? = nil) -> NFSNode {
        let (minimum, maximum) = options.timeouts(forDirectory: status.type == .directory)
        guard let old = self[fid: status.fid] else {
            var node = NFSNode(status: status, timeout: minimum)
            node.fetchedAt = Self.now()
            node.namesVersion = status.dataVersion
            held.place(node, keepingReplacedIf: { $0.openCount > 0 || $0.isDirty })
            statistics.update { $0.vnodes = nodes.count }
            return node
        }
        // A reply that left the server before one already applied (a readahead READ racing a
        // truncate on another FUSE thread) may not undo it: data versions only grow.
        if status.dataVersion < old.status.dataVersion { return old }
        let changed = old.status.dataVersion != status.dataVersion || old.status.mtime != status.mtime || old.status.size != status.size
        let byUs = ownChangeFrom == old.status.dataVersion
        if changed && !byUs { dropCachedData(status.fid) }
        return update(status.fid) { node in
            if changed && !byUs {
                node.timeout = minimum
            } else if !changed {
                node.timeout = min(max(node.timeout * 2, minimum), maximum)
            } else {
                node.timeout = minimum
            }
            if node.isDirectory && node.namesVersion != status.dataVersion && !byUs { node.names = [:] }
            if node.isDirectory { node.namesVersion = status.dataVersion }
            var updated = status
            if node.isDirty {
                // Unsent writes: the local size and mtime are newer than the server's.
                updated.size = max(status.size, node.status.size)
                updated.mtime = node.status.mtime
                // A write here took the set-id bits away; the server does so when the WRITE arrives.
                if updated.mode & ~FileStatus.privilegeBits(updated.mode) == node.status.mode { updated.mode = node.status.mode }
            }
            node.status = updated
            node.fetchedAt = Self.now()
            return node
        }!
    }

    /// Puts `data` in the block cache as block `index` of `fid`; blocks it evicts leave their
    /// nodes' sets.
    mutating func cacheBlock(_ fid: FID, index: UInt64, _ data: [UInt8]) {
        let evicted = blocks.set(BlockKey(fid: fid, index: index), data, cost: data.count)
        update(fid) { _ = $0.cachedBlocks.insert(index) }
        forgetEvicted(evicted)
    }

    /// Takes block `index` of `fid` out of the block cache.
    mutating func uncacheBlock(_ fid: FID, index: UInt64) {
        blocks.remove(BlockKey(fid: fid, index: index))
        update(fid) { _ = $0.cachedBlocks.remove(index) }
    }

    /// Blocks the cache let go: their nodes no longer list them.
    mutating func forgetEvicted(_ evicted: [BlockKey]) {
        for key in evicted { update(key.fid) { _ = $0.cachedBlocks.remove(key.index) } }
        let total = UInt64(blocks.totalCost)
        statistics.update {
            $0.evictions += evicted.count
            $0.cacheBytes = total
        }
    }

    /// Forgets a node's clean data (blocks, listing, names, link target) and the kernel's copy.
    mutating func dropCachedData(_ fid: FID) {
        guard let node = self[fid: fid] else { return }
        for index in node.cachedBlocks { blocks.remove(BlockKey(fid: fid, index: index)) }
        update(fid) { node in
            node.cachedBlocks = []
            node.listing = nil
            node.names = [:]
            node.symlinkTarget = nil
            node.kernelVersion = nil
        }
        let names = node.listing.map { $0.map(\.name) } ?? []
        let hadKernelPages = node.kernelVersion != nil || node.isDirectory
        statistics.update { $0.cacheBytes = UInt64(blocks.totalCost) }
        // The kernel may hold the old attributes from any lookup or getattr: drop them now, even
        // from inside a request on this inode (an attribute-only invalidation takes no lock a
        // request holds), so the next read asks for the new size. Pages and names go later, from
        // another thread.
        let inode = node.inode
        notifier?.invalidateAttributes(inode)
        guard hadKernelPages else { return }
        core.tellKernelLater { notifier in
            notifier.invalidateInode(inode)
            for name in names { notifier.invalidateEntry(parent: inode, name: name) }
        }
    }

    /// An entry for `fid`, reached as `name` in `parent`, goes to the kernel: one more reference
    /// for it to forget. Returns the node.
    mutating func handedToKernel(_ fid: FID, parent: Inode, name: String) throws -> NFSNode {
        guard let node = update(fid, { node in
            node.handedToKernel()
            node.parent = parent
            node.name = name
            return node
        }) else { throw FileSystemError.stale }
        return node
    }

    /// The kernel dropped `count` references to `inode`: a node it no longer knows goes once it is
    /// neither open nor dirty.
    mutating func kernelForgot(_ inode: Inode, count: UInt64) {
        guard inode != FID.root.vnode, let fid = nodes[inode]?.fid, held.byInode[inode]?.kernelDropped(count) == true else { return }
        releaseIfForgotten(fid)
    }

    /// A descriptor of `fid` closed. The last descriptor of a file unlinked here takes its data
    /// with it; a node the kernel forgot while it was open (or that only open files reached) goes.
    mutating func closed(_ fid: FID) {
        guard let node = update(fid, { node in
            node.openCount -= 1
            if node.removed && node.openCount == 0 { node.dirtyBlocks = [:] }
            return node
        }) else { return }
        guard node.openCount == 0 else { return }
        if held.detached[fid] != nil {
            writtenBack(fid)
        } else if node.removed {
            remove(node.inode)
        } else {
            releaseIfForgotten(fid)
        }
    }

    /// A detached node goes once nothing holds it: no open file, no unsent write.
    mutating func writtenBack(_ fid: FID) {
        guard let node = held.detached[fid], node.openCount == 0, !node.isDirty else { return }
        for index in node.cachedBlocks { blocks.remove(BlockKey(fid: fid, index: index)) }
        held.detached[fid] = nil
    }

    /// Drops a node the kernel forgot once it is neither open nor dirty.
    mutating func releaseIfForgotten(_ fid: FID) {
        guard let node = nodes[fid.vnode], node.fid == fid, node.forgotten, node.openCount == 0, !node.isDirty,
              node.inode != FID.root.vnode else { return }
        remove(node.inode)
    }

    private mutating func remove(_ inode: Inode) {
        if let node = held.byInode.removeValue(forKey: inode) {
            for index in node.cachedBlocks { blocks.remove(BlockKey(fid: node.fid, index: index)) }
        }
        statistics.update {
            $0.vnodes = nodes.count
            $0.cacheBytes = UInt64(blocks.totalCost)
        }
    }

    /// Undoes `holdBlocks` when the unlink did not happen.
    mutating func releaseHeldBlocks(of fid: FID) {
        update(fid) { node in node.dirtyBlocks = node.dirtyBlocks.filter { $0.value.dirtyEnd > $0.value.dirtyStart } }
    }
}
