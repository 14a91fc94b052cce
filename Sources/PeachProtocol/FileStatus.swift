/// The kinds of object a vnode can be.
public enum FileType: UInt8, Sendable {
    case regular = 1
    case directory = 2
    case symlink = 3
    case fifo = 4
    case socket = 5
    case characterDevice = 6
    case blockDevice = 7
}

/// A point in time with nanoseconds, as `struct timespec`.
public struct Timespec: Hashable, Sendable, Comparable {
    public var seconds: Int64
    public var nanoseconds: UInt32

    public init(seconds: Int64, nanoseconds: UInt32 = 0) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }

    public static func < (a: Timespec, b: Timespec) -> Bool {
        (a.seconds, a.nanoseconds) < (b.seconds, b.nanoseconds)
    }
}

/// The status of a vnode, what AFS calls AFSFetchStatus and NFS calls fattr.
public struct FileStatus: Hashable, Sendable {
    public var fid: FID
    public var type: FileType
    /// Permission bits and set-id/sticky bits (the low 12 bits of st_mode).
    public var mode: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var size: UInt64
    public var linkCount: UInt32
    /// Bumped on every change of content; a cached copy is valid while it matches.
    public var dataVersion: UInt64
    public var atime: Timespec
    public var mtime: Timespec
    public var ctime: Timespec
    /// Device number for character and block devices.
    public var rdev: UInt64

    public init(
        fid: FID, type: FileType, mode: UInt32, uid: UInt32, gid: UInt32, size: UInt64,
        linkCount: UInt32, dataVersion: UInt64, atime: Timespec, mtime: Timespec, ctime: Timespec,
        rdev: UInt64 = 0
    ) {
        self.fid = fid
        self.type = type
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.size = size
        self.linkCount = linkCount
        self.dataVersion = dataVersion
        self.atime = atime
        self.mtime = mtime
        self.ctime = ctime
        self.rdev = rdev
    }
}

extension FileStatus {
    /// The set-user-ID bit, and the set-group-ID bit of a group-executable file: what a write by
    /// someone other than root, or any change of owner, takes away (Linux's should_remove_suid).
    public static func privilegeBits(_ mode: UInt32) -> UInt32 {
        var bits: UInt32 = 0o4000
        if mode & 0o010 != 0 { bits |= 0o2000 }
        return bits
    }

    /// A write by `uid` takes the privilege bits away unless `uid` is root (who has CAP_FSETID).
    public mutating func losePrivilegeBits(onWriteBy uid: UInt32) {
        if uid != 0 { mode &= ~Self.privilegeBits(mode) }
    }
}

/// A time to set: a given instant, or the server's clock (utimensat's UTIME_NOW).
public enum TimeToSet: Hashable, Sendable {
    case now
    case at(Timespec)
}

/// The attributes a StoreStatus (setattr) changes; nil fields stay as they are.
public struct SetAttributes: Hashable, Sendable {
    public var mode: UInt32?
    public var uid: UInt32?
    public var gid: UInt32?
    public var size: UInt64?
    public var atime: TimeToSet?
    public var mtime: TimeToSet?

    public init(
        mode: UInt32? = nil, uid: UInt32? = nil, gid: UInt32? = nil, size: UInt64? = nil,
        atime: TimeToSet? = nil, mtime: TimeToSet? = nil
    ) {
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.size = size
        self.atime = atime
        self.mtime = mtime
    }

    public var isEmpty: Bool {
        mode == nil && uid == nil && gid == nil && size == nil && atime == nil && mtime == nil
    }
}

/// One name in a directory.
public struct DirectoryEntry: Hashable, Sendable {
    public var name: String
    public var fid: FID
    public var type: FileType

    public init(name: String, fid: FID, type: FileType) {
        self.name = name
        self.fid = fid
        self.type = type
    }
}
