import NIOConcurrencyHelpers
import PeachProtocol

/// What the AFS-mode cache manager knows of one vnode: a value owned by the manager's
/// `CachedVnodeTable`, read and changed only under its lock, through its methods. Open files
/// name it by FID (`OpenFile`).
struct CachedVnode: Sendable {
    let fid: FID
    /// The latest status from the server (for a dirty file, size and mtime are the local copy's).
    var status: FileStatus
    /// Unix seconds until which the server promised to tell us of changes; 0: no promise.
    var callBackExpiry: UInt64 = 0
    /// Where the kernel reached it from, for "..", and for paths in `peach fs callbacks`.
    var parent: Inode?
    var name: String?

    /// Directories: the cached listing and the data version it was fetched at.
    var listing: [String: DirectoryEntry]?
    var listingVersion: UInt64 = 0
    /// Symlinks: the cached target.
    var symlinkTarget: String?

    /// Files: local state of the cached copy. Whether it is dirty is the disk cache's to say
    /// (`CachedVnodeTable.isDirty`): one place, which its index mirrors durably.
    var openCount = 0
    /// The data version the kernel's page cache holds for this inode, if any.
    var kernelVersion: UInt64?
    /// Removed on the server while open here: nothing to store back to.
    var removed = false
    /// chmod, chown and utime made while open and dirty, sent with the next store.
    var pendingStatus = StoreStatusChange()
    /// The owner the server knows while a chown waits in `pendingStatus`: a store made with no
    /// caller (unmount, recovery) acts as that owner.
    var ownerOnServer: Credential?
    /// Entries the kernel was given for this vnode and has not forgotten (FUSE's lookup count).
    var kernelReferences: UInt64 = 0
    /// The kernel forgot it while it was open or dirty: it goes once it is neither.
    var forgotten = false

    /// Serializes fetches and stores of this vnode; never taken while holding the table's lock.
    /// NIOLock has reference semantics: every copy of this value, and the open files, share it.
    let io = NIOLock()

    init(status: FileStatus) {
        fid = status.fid
        self.status = status
    }

    var inode: Inode { fid.vnode }
    var isDirectory: Bool { status.type == .directory }
}

/// An open file: a descriptor on the cached copy it opened, so it keeps reading that version.
/// Its vnode stays in the table, by FID, while it is open (`NodesByInode.detached`).
struct OpenFile: Sendable {
    let fid: FID
    /// The vnode's `io` lock.
    let io: NIOLock
    /// The cached copy, open; nil for a file read through (`readThrough`).
    let copy: SpareCacheFiles.Descriptor?
    /// The data was cached and valid at open: its reads count as hits.
    let servedFromCache: Bool
    /// A file larger than the whole cache, opened read-only: each read is a ranged FetchData,
    /// and nothing is cached (as OpenAFS's cache bypass).
    var readThrough: Bool { copy == nil }
    var fd: Int32 { copy?.fd ?? -1 }
}
