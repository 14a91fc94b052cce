import Foundation
import PeachProtocol

/// Inode numbers as the kernel sees them: the FID's vnode number (FUSE's root, 1, is the
/// volume root's vnode).
public typealias Inode = UInt64

/// Who is asking: the calling process's identity, for ownership of new files.
public struct RequestContext: Sendable {
    public var uid: UInt32
    public var gid: UInt32
    public var umask: UInt32

    public init(uid: UInt32, gid: UInt32, umask: UInt32 = 0) {
        self.uid = uid
        self.gid = gid
        self.umask = umask
    }

    public static let root = RequestContext(uid: 0, gid: 0)
}

/// Attributes with how long the kernel may cache them.
public struct Attributes: Sendable {
    public var status: FileStatus
    /// Seconds the kernel may trust them without asking again.
    public var timeout: Double

    public var inode: Inode { status.fid.vnode }
}

/// The answer to a lookup or a create: the inode, its attributes, and how long the kernel may
/// keep the name → inode binding.
public struct Entry: Sendable {
    public var attributes: Attributes
    public var entryTimeout: Double

    public var inode: Inode { attributes.inode }
}

/// What the kernel should do with an open file. The FUSE adapter turns these into
/// `fuse_file_info` flags; it holds no design-specific logic.
public struct OpenReply: Sendable {
    public var handle: UInt64
    /// The kernel's page cache for this inode is still valid (FOPEN_KEEP_CACHE).
    public var keepCache: Bool
    /// Bypass the page cache (FOPEN_DIRECT_IO).
    public var directIO: Bool
    /// The kernel need not send FLUSH at close: a read-only open has nothing to store.
    public var noFlush: Bool

    public init(handle: UInt64, keepCache: Bool, directIO: Bool = false, flags: Int32) {
        self.handle = handle
        self.keepCache = keepCache
        self.directIO = directIO
        noFlush = flags & O_ACCMODE == O_RDONLY
    }
}

public struct DirectoryListingEntry: Sendable, Equatable {
    public var name: String
    public var inode: Inode
    public var type: FileType
}

/// A callback this cache manager holds, for `peach fs callbacks`.
public struct CallBackInfo: Sendable, Codable, Equatable {
    public var fid: String
    public var path: String?
    /// Unix seconds.
    public var expiresAt: UInt64
}

/// `peach fs getcacheparms`: the cache's use and limit.
public struct CacheParameters: Sendable, Codable, Equatable {
    public var usedBytes: UInt64
    public var limitBytes: UInt64
    /// Files with cached data (AFS mode: cached copies on disk; NFS mode: files with cached blocks).
    public var files: Int
}

/// `peach fs whereis`: the server holding a file, and the file's FID there.
public struct FileLocation: Sendable, Codable, Equatable {
    public var server: String
    public var fid: String
}

/// A dirty file that could not be stored, and why.
public struct UnsavedFile: Sendable, Codable, Equatable {
    public var fid: String
    public var path: String?
    public var error: String
}

/// `peach fs sync`: what a store of every dirty file did.
public struct SyncReport: Sendable, Codable, Equatable {
    public var stored: Int
    public var failed: [UnsavedFile]
}

/// `peach fs flushall`: what dropping every cached copy did.
public struct FlushReport: Sendable, Codable, Equatable {
    /// Files and directories whose cached data went.
    public var dropped: Int
    /// Open files, which keep their copies (their descriptors use them).
    public var keptOpen: Int
    /// Dirty files whose store failed: their copies stay.
    public var failed: [UnsavedFile]
}

/// Lets the core tell the kernel that cached attributes, pages or names went stale. The FUSE
/// adapter implements it; in-process clients have no kernel cache and pass nil.
public protocol KernelNotifier: Sendable {
    /// Drops the inode's cached attributes and pages.
    func invalidateInode(_ inode: Inode)
    /// Drops only the inode's cached attributes.
    func invalidateAttributes(_ inode: Inode)
    func invalidateEntry(parent: Inode, name: String)
}

/// The seam of PeachFS: the operations a FUSE adapter needs, implemented by each client design.
/// The FUSE adapter, in-process benchmark clients and tests talk to this, never to a concrete
/// cache. Every call may block on the server; none may be made from an event loop.
public protocol CacheManager: AnyObject, Sendable {
    var statistics: ClientStatistics { get }
    func setKernelNotifier(_ notifier: KernelNotifier?)

    /// Connects to the server. Throws (EIO with the reason) when it cannot be reached.
    func start() throws
    /// Stores what is dirty, gives up callbacks, closes the connection.
    func shutdown()

    func lookup(parent: Inode, name: String) throws -> Entry
    func forget(_ inode: Inode, count: UInt64)
    func getAttributes(_ inode: Inode, handle: UInt64?) throws -> Attributes
    func setAttributes(_ inode: Inode, _ changes: SetAttributes, handle: UInt64?) throws -> Attributes
    /// The directory's entries including "." and "..".
    func readDirectory(_ inode: Inode) throws -> [DirectoryListingEntry]

    func open(_ inode: Inode, flags: Int32) throws -> OpenReply
    func create(parent: Inode, name: String, mode: UInt32, flags: Int32, context: RequestContext) throws -> (Entry, OpenReply)
    func read(handle: UInt64, offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int
    func write(handle: UInt64, offset: UInt64, from buffer: UnsafeRawBufferPointer) throws -> Int
    /// close(2): the error, if any, reaches the application.
    func flush(handle: UInt64) throws
    func fsync(handle: UInt64) throws
    func release(handle: UInt64)

    func makeDirectory(parent: Inode, name: String, mode: UInt32, context: RequestContext) throws -> Entry
    func makeNode(parent: Inode, name: String, type: FileType, mode: UInt32, rdev: UInt64, context: RequestContext) throws -> Entry
    func symlink(parent: Inode, name: String, target: String, context: RequestContext) throws -> Entry
    func readlink(_ inode: Inode) throws -> String
    func unlink(parent: Inode, name: String) throws
    func removeDirectory(parent: Inode, name: String) throws
    func rename(parent: Inode, name: String, newParent: Inode, newName: String, noReplace: Bool) throws
    func link(_ inode: Inode, newParent: Inode, newName: String) throws -> Entry
    func volumeStatus() throws -> VolumeStatus

    /// `peach fs flush`: store the file if dirty, then drop the cached copy.
    func flushCachedCopy(_ inode: Inode) throws
    /// `peach fs callbacks`.
    func callBacks() -> [CallBackInfo]
    /// `peach fs conflicts`: dirty copies kept aside because the server had a newer version.
    func conflicts() -> [Conflict]
    /// `peach fs getcacheparms`.
    func cacheParameters() -> CacheParameters
    /// `peach fs whereis`.
    func location(of inode: Inode) throws -> FileLocation
    /// `peach fs sync`: a barrier that returns once every dirty file is stored, or says which
    /// could not be.
    func storeAllDirty() -> SyncReport
    /// `peach fs flushall`: drops every cached copy nothing holds open, storing dirty ones first.
    func flushAll() -> FlushReport
    /// `peach fs setcachesize`: a new limit, in force at once (clean copies are evicted to fit).
    func setCacheSize(_ bytes: UInt64) -> CacheParameters
    /// `peach fs checkservers`.
    func checkServer() -> ServerCheck
    /// `peach fs storebehind`: whether a close returns before its store, and stores waiting.
    func storeBehindState() throws -> StoreBehindState
    /// `peach fs storebehind --on/--off`.
    func setStoreBehind(_ enabled: Bool) throws
}

/// `peach fs storebehind`.
public struct StoreBehindState: Codable, Sendable, Equatable {
    public var enabled: Bool
    /// Closed files whose store has not run yet.
    public var pending: Int
}

/// `peach fs checkservers`: the file server, whether it answers, since when not, how fast.
public struct ServerCheck: Codable, Sendable, Equatable {
    public var server: String
    public var reachable: Bool
    /// Unix seconds; nil while reachable.
    public var unreachableSince: Double?
    /// The round trip of a ping; nil when it got no answer.
    public var roundTripMilliseconds: Double?
}
