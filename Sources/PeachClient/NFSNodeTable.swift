import Glibc
import PeachProtocol

/// What the NFS-style cache manager knows, behind its one `Mutex` (`NFSCacheManager.table`): a
/// node per inode and the clean block cache. An `NFSNode` is a reference cell shared with the open
/// files that use it; its fields are read and written only under this table's lock, as every
/// method here is called.
struct NFSNodeTable {
    let core: ClientCore<NFSOpenFile>
    let options: NFSOptions
    var nodes: [Inode: NFSNode] = [:]
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
    @discardableResult
    mutating func apply(_ status: FileStatus, ownChangeFrom: UInt64? = nil) -> NFSNode {
        let (minimum, maximum) = options.timeouts(forDirectory: status.type == .directory)
        guard let node = nodes[status.fid.vnode], node.fid == status.fid else {
            let node = NFSNode(status: status, timeout: minimum)
            node.fetchedAt = Self.now()
            node.namesVersion = status.dataVersion
            nodes[status.fid.vnode] = node
            statistics.update { $0.vnodes = nodes.count }
            return node
        }
        let old = node.status
        // A reply that left the server before one already applied (a readahead READ racing a
        // truncate on another FUSE thread) may not undo it: data versions only grow.
        if status.dataVersion < old.dataVersion { return node }
        let changed = old.dataVersion != status.dataVersion || old.mtime != status.mtime || old.size != status.size
        let byUs = ownChangeFrom == old.dataVersion
        if changed && !byUs {
            dropCachedData(node)
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
            updated.size = max(status.size, old.size)
            updated.mtime = old.mtime
            // A write here took the set-id bits away; the server does so when the WRITE arrives.
            if updated.mode & ~FileStatus.privilegeBits(updated.mode) == old.mode { updated.mode = old.mode }
        }
        node.status = updated
        node.fetchedAt = Self.now()
        return node
    }

    /// Forgets a node's clean data (blocks, listing, names, link target) and the kernel's copy.
    mutating func dropCachedData(_ node: NFSNode) {
        for index in node.cachedBlocks { blocks.remove(BlockKey(inode: node.inode, index: index)) }
        node.cachedBlocks = []
        let names = node.listing.map { $0.map(\.name) } ?? []
        node.listing = nil
        node.names = [:]
        node.symlinkTarget = nil
        let hadKernelPages = node.kernelVersion != nil || node.isDirectory
        node.kernelVersion = nil
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

    /// Drops a node the kernel forgot once it is neither open nor dirty.
    mutating func releaseIfForgotten(_ node: NFSNode) {
        guard node.forgotten, node.openCount == 0, !node.isDirty,
              node.inode != FID.root.vnode, nodes[node.inode] === node else { return }
        for index in node.cachedBlocks { blocks.remove(BlockKey(inode: node.inode, index: index)) }
        nodes[node.inode] = nil
        statistics.update {
            $0.vnodes = nodes.count
            $0.cacheBytes = UInt64(blocks.totalCost)
        }
    }

    /// Undoes `holdBlocks` when the unlink did not happen.
    func releaseHeldBlocks(of node: NFSNode) {
        node.dirtyBlocks = node.dirtyBlocks.filter { $0.value.dirtyEnd > $0.value.dirtyStart }
    }
}
