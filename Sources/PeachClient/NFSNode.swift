import NIOConcurrencyHelpers
import PeachProtocol

/// What the NFS-style client knows of one file or directory: attributes with their cache
/// timeout, a directory's listing and names, a file's dirty blocks. A value owned by the
/// manager's `NFSNodeTable`, read and changed only under its lock, through its methods.
struct NFSNode: Sendable {
    let fid: FID
    var status: FileStatus
    /// Monotonic seconds when `status` came from the server.
    var fetchedAt: Double = 0
    /// The current attribute timeout: from min, doubled while the attributes stay unchanged.
    var timeout: Double
    var parent: Inode?
    var name: String?

    /// Directories: the listing from READDIR and the data version it was read at.
    var listing: [DirectoryEntry]?
    /// Directories: names looked up (nil value: a cached "no such name"), valid while the
    /// directory's data version is `namesVersion`.
    var names: [String: Inode?] = [:]
    var namesVersion: UInt64 = 0
    var symlinkTarget: String?

    /// Files: block indexes present in the clean block cache.
    var cachedBlocks: Set<UInt64> = []
    /// Files: written blocks not yet sent, by block index.
    var dirtyBlocks: [UInt64: DirtyBlock] = [:]
    /// The node's `writes` and `writeBacks` locks, shared with its open files.
    let locks = NFSNodeLocks()
    var openCount = 0
    /// The data version the kernel's page cache holds, if any.
    var kernelVersion: UInt64?
    /// Entries the kernel was given for this node and has not forgotten (FUSE's lookup count).
    var kernelReferences: UInt64 = 0
    /// The kernel forgot it while it was open or dirty: it goes once it is neither.
    var forgotten = false
    /// Unlinked here while open: gone from the server, its blocks held in `dirtyBlocks` for the
    /// open descriptors until the last close, and nothing is sent for it.
    var removed = false

    init(status: FileStatus, timeout: Double) {
        fid = status.fid
        self.status = status
        self.timeout = timeout
    }

    var inode: Inode { fid.vnode }
    var isDirectory: Bool { status.type == .directory }
    var isDirty: Bool { !dirtyBlocks.isEmpty }
}

/// A block with local changes: its full content (so any range of it can be sent) and the range
/// that differs from the server's.
struct DirtyBlock {
    var data: [UInt8]
    var dirtyStart: Int
    var dirtyEnd: Int
}

/// A clean block of a file at one data version.
struct BlockKey: Hashable {
    /// The FID, not the inode: a node detached from its inode (a vnode number the server reused)
    /// and the one that took the inode must not share blocks.
    var fid: FID
    var index: UInt64
}

/// The locks that order a node's writes, write-backs and size changes. A class: every copy of
/// the node and every open file of it share them.
final class NFSNodeLocks: Sendable {
    /// Held by a write for its read-modify-write of dirty blocks: two writes into one block on
    /// two FUSE threads (the kernel sends a mapping's dirty pages in parallel) would otherwise
    /// each start from the block as it was, and the later would undo the earlier's bytes.
    /// Lock order: this, then the table's lock.
    let writes = NIOLock()
    /// Held while dirty blocks are sent (WRITE, COMMIT), and by a size change from before its
    /// write-back until its SETATTR is answered. The server may carry out two requests of one
    /// connection in either order, so a close's WRITE still unanswered when a truncate's SETATTR
    /// went out could land after it and bring truncated bytes back (fsx saw the old size after a
    /// reopen). Lock order: `writes`, then this, then the table's lock.
    let writeBacks = NIOLock()
}

/// An open file of the NFS-style client: the node it opened, by FID (its node stays in the
/// table while it is open), and the node's locks.
struct NFSOpenFile: Sendable {
    let fid: FID
    let locks: NFSNodeLocks
}
