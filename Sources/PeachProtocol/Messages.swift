/// The protocol version this build speaks; Hello refuses any other.
public let peachProtocolVersion: UInt16 = 5

/// Request types, named as AFS-3's file server interface names them. One opcode per operation
/// for both designs: the design a client declared in Hello decides whether it is granted
/// callbacks. The byte-range procedures of the NFS-style design keep NFSv3's names.
public enum Opcode: UInt16, Sendable, CaseIterable {
    case hello = 1
    case ping = 2
    case fetchStatus = 3
    case bulkStatus = 4
    case fetchData = 5
    case storeData = 6
    case storeStatus = 7
    case createFile = 8
    case makeDir = 9
    case symlink = 10
    case link = 11
    case removeFile = 12
    case removeDir = 13
    case rename = 14
    case giveUpCallBacks = 15
    case getVolumeStatus = 16
    /// A cache manager's farewell (OpenAFS's GiveUpAllCallBacks): every promise it holds, broken
    /// or not, goes at once, and no change waits for it after its connection closes.
    case giveUpAllCallBacks = 17

    // Name and byte-range procedures (NFSv3's), used by the NFS-style design.
    case lookup = 34
    case read = 35
    case write = 36
    case commit = 37
    case readDir = 38
    case readlink = 46
    /// An operator's question (`peach admin`), answered only to an administrator.
    case admin = 60

    /// The name used in statistics (`rpcs`) and docs.
    public var name: String {
        switch self {
        case .hello: "Hello"
        case .ping: "Ping"
        case .fetchStatus: "FetchStatus"
        case .bulkStatus: "BulkStatus"
        case .fetchData: "FetchData"
        case .storeData: "StoreData"
        case .storeStatus: "StoreStatus"
        case .createFile: "CreateFile"
        case .makeDir: "MakeDir"
        case .symlink: "Symlink"
        case .link: "Link"
        case .removeFile: "RemoveFile"
        case .removeDir: "RemoveDir"
        case .rename: "Rename"
        case .giveUpCallBacks: "GiveUpCallBacks"
        case .getVolumeStatus: "GetVolumeStatus"
        case .giveUpAllCallBacks: "GiveUpAllCallBacks"
        case .lookup: "LOOKUP"
        case .read: "READ"
        case .write: "WRITE"
        case .commit: "COMMIT"
        case .readDir: "READDIR"
        case .readlink: "READLINK"
        case .admin: "Admin"
        }
    }
}

/// The two client designs a server serves: AFS-style connections are granted callbacks,
/// NFS-style ones are served statelessly (no promises, no per-client state).
public enum ClientDesign: String, CaseIterable, Sendable, CustomStringConvertible {
    case afs
    case nfs

    public var description: String { rawValue }

    /// The design's byte in Hello.
    public var wireValue: UInt8 {
        switch self {
        case .afs: 1
        case .nfs: 2
        }
    }

    public init?(wireValue: UInt8) {
        switch wireValue {
        case 1: self = .afs
        case 2: self = .nfs
        default: return nil
        }
    }
}

public struct Hello: Hashable, Sendable {
    public var version: UInt16
    /// A persistent identity of the cache manager (a UUID string), kept in its cache directory.
    public var clientID: String
    /// Bumped each time the cache manager starts; a new epoch tells the server the client
    /// dropped every promise it held.
    public var epoch: UInt64
    /// Whether the connection is granted callbacks.
    public var design: ClientDesign

    public init(version: UInt16 = peachProtocolVersion, clientID: String, epoch: UInt64, design: ClientDesign = .afs) {
        self.version = version
        self.clientID = clientID
        self.epoch = epoch
        self.design = design
    }
}

public struct HelloReply: Hashable, Sendable {
    public var version: UInt16
    /// The server's restart counter.
    public var serverEpoch: UInt64
    /// True when the server no longer holds this client's callbacks (it was declared unreachable,
    /// or came back with a new epoch): every cached entry must be revalidated.
    public var callBacksLost: Bool
    /// How long a client may trust its callbacks after it last heard from the server (counted
    /// from when it sent the request answered), in milliseconds. The server waits at least this
    /// long after its last contact with a client before it gives the client's callbacks up.
    public var leaseMilliseconds: UInt32

    public init(version: UInt16 = peachProtocolVersion, serverEpoch: UInt64, callBacksLost: Bool, leaseMilliseconds: UInt32 = 5000) {
        self.version = version
        self.serverEpoch = serverEpoch
        self.callBacksLost = callBacksLost
        self.leaseMilliseconds = leaseMilliseconds
    }
}

public struct CreateRequest: Hashable, Sendable {
    public var directory: FID
    public var name: String
    public var type: FileType
    public var mode: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var rdev: UInt64
    /// Symlink target, for `type == .symlink` only.
    public var symlinkTarget: String

    public init(directory: FID, name: String, type: FileType, mode: UInt32, uid: UInt32, gid: UInt32,
                rdev: UInt64 = 0, symlinkTarget: String = "") {
        self.directory = directory
        self.name = name
        self.type = type
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.rdev = rdev
        self.symlinkTarget = symlinkTarget
    }
}

/// A part of a file: `length` bytes from `offset` (fewer at the end of the file).
public struct ByteRange: Hashable, Sendable {
    public var offset: UInt64
    public var length: UInt64

    public init(offset: UInt64, length: UInt64) {
        self.offset = offset
        self.length = length
    }

    /// From the start to the end, however long.
    public static let whole = ByteRange(offset: 0, length: .max)

    /// The part of `size` bytes this range covers, as offsets clamped to `size`.
    public func clamped(to size: UInt64) -> Range<UInt64> {
        let start = min(offset, size)
        return start..<start + min(length, size - start)
    }
}

public enum Request: Hashable, Sendable {
    case hello(Hello)
    case ping
    case fetchStatus(FID)
    /// At most `Request.maximumBulkStatusCount` FIDs.
    case bulkStatus([FID])
    /// The bytes of a file, directory listing or symlink target in `range` (all of it by
    /// default), as AFS-3's FetchData takes a position and a length; the reply is followed by
    /// data frames.
    case fetchData(FID, range: ByteRange = .whole)
    /// Whole file of `size` bytes; the request is followed by data frames. `mtime` is the
    /// client's modification time of its copy (AFS's ClientModTime), so `cp -a` keeps times;
    /// `status` carries the mode and owner changes made while the file was open and dirty (AFS-3's
    /// StoreData InStatus), applied in the same transaction.
    ///
    /// With `baseVersion`, the store is conditional: it is refused (versionConflict) unless the
    /// file is still at that data version. A cache manager stores a copy left dirty by a failed
    /// store or a crash this way, so that it never overwrites a newer version.
    case storeData(FID, size: UInt64, mtime: Timespec, status: StoreStatusChange = StoreStatusChange(), baseVersion: UInt64? = nil)
    case storeStatus(FID, SetAttributes)
    /// Regular files, fifos, sockets and devices: `CreateRequest.type` says which.
    case createFile(CreateRequest)
    case makeDir(CreateRequest)
    case symlink(CreateRequest)
    case link(directory: FID, name: String, target: FID)
    case removeFile(directory: FID, name: String)
    case removeDir(directory: FID, name: String)
    case rename(fromDirectory: FID, fromName: String, toDirectory: FID, toName: String)
    case giveUpCallBacks([FID])
    case getVolumeStatus
    case giveUpAllCallBacks

    // Names and byte ranges, NFSv3's procedures (any design may use them; none grants callbacks).
    case lookup(directory: FID, name: String)
    /// At most `count` bytes from `offset`; `count` may not exceed `Frame.dataChunkSize`.
    case read(FID, offset: UInt64, count: UInt32)
    /// Unstable until COMMIT, as NFSv3's UNSTABLE writes.
    case write(FID, offset: UInt64, data: [UInt8])
    /// Makes the file's written data durable.
    case commit(FID)
    /// Up to `count` entries from position `cookie` of the listing (sorted by name).
    case readDir(FID, cookie: UInt32, count: UInt32)
    case readlink(FID)
    /// Needs no Hello: an administrator's tool is not a cache manager and holds no promises.
    case admin(AdminQuery)

    public var opcode: Opcode {
        switch self {
        case .hello: .hello
        case .ping: .ping
        case .fetchStatus: .fetchStatus
        case .bulkStatus: .bulkStatus
        case .fetchData: .fetchData
        case .storeData: .storeData
        case .storeStatus: .storeStatus
        case .createFile: .createFile
        case .makeDir: .makeDir
        case .symlink: .symlink
        case .link: .link
        case .removeFile: .removeFile
        case .removeDir: .removeDir
        case .rename: .rename
        case .giveUpCallBacks: .giveUpCallBacks
        case .getVolumeStatus: .getVolumeStatus
        case .giveUpAllCallBacks: .giveUpAllCallBacks
        case .lookup: .lookup
        case .read: .read
        case .write: .write
        case .commit: .commit
        case .readDir: .readDir
        case .readlink: .readlink
        case .admin: .admin
        }
    }
}

/// Status changes that ride along with a StoreData (nil: unchanged): the chmod, chown and utime
/// a program made on the file while it was open and dirty (`cp -a` makes all three).
public struct StoreStatusChange: Hashable, Sendable {
    public var mode: UInt32?
    public var uid: UInt32?
    public var gid: UInt32?
    public var atime: Timespec?

    public init(mode: UInt32? = nil, uid: UInt32? = nil, gid: UInt32? = nil, atime: Timespec? = nil) {
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.atime = atime
    }

    public var isEmpty: Bool { mode == nil && uid == nil && gid == nil && atime == nil }

    /// `later`'s changes on top of these.
    public func merged(with later: StoreStatusChange) -> StoreStatusChange {
        StoreStatusChange(mode: later.mode ?? mode, uid: later.uid ?? uid, gid: later.gid ?? gid, atime: later.atime ?? atime)
    }
}

/// What a namespace operation changed: the directory, the object named, and for Rename the
/// second directory. The client updates its cached copies from it instead of refetching.
public struct NamespaceChange: Hashable, Sendable {
    public var directory: FileStatus
    /// The created or linked object; for removals the object's new status (link count 0: it is gone).
    public var target: FileStatus?
    /// Rename only: the destination directory.
    public var otherDirectory: FileStatus?

    public init(directory: FileStatus, target: FileStatus?, otherDirectory: FileStatus? = nil) {
        self.directory = directory
        self.target = target
        self.otherDirectory = otherDirectory
    }
}

public struct VolumeStatus: Hashable, Sendable {
    public var blockSize: UInt32
    public var totalBlocks: UInt64
    public var freeBlocks: UInt64
    public var totalFiles: UInt64
    public var freeFiles: UInt64

    public init(blockSize: UInt32, totalBlocks: UInt64, freeBlocks: UInt64, totalFiles: UInt64, freeFiles: UInt64) {
        self.blockSize = blockSize
        self.totalBlocks = totalBlocks
        self.freeBlocks = freeBlocks
        self.totalFiles = totalFiles
        self.freeFiles = freeFiles
    }
}

/// One answer of a BulkStatus: the status, or why there is none.
public enum BulkStatusEntry: Hashable, Sendable {
    case status(FileStatus)
    case error(StatusCode)
}

/// A successful reply. Failures travel as a status code instead (see `ReplyCodec`).
///
/// `callBackExpiry` (Unix seconds, 0 for none) is the promise the server made on every FID whose
/// status the reply carries.
public enum Reply: Hashable, Sendable {
    case hello(HelloReply)
    case pong
    case status(FileStatus, callBackExpiry: UInt64)
    case bulkStatus([BulkStatusEntry], callBackExpiry: UInt64)
    /// FetchData: data frames with `status.size` bytes (files) or a directory listing follow.
    case fetchData(FileStatus, callBackExpiry: UInt64)
    case namespace(NamespaceChange, callBackExpiry: UInt64)
    case done
    case volumeStatus(VolumeStatus)
    /// LOOKUP: the directory's and the named object's attributes.
    case lookup(directory: FileStatus, object: FileStatus)
    /// READ: the file's attributes after the read, and the bytes (fewer than asked at the end).
    case read(FileStatus, data: [UInt8])
    /// WRITE: the data version before the write (NFS's weak cache consistency data) and after.
    case write(before: UInt64, FileStatus)
    case readDir(FileStatus, entries: [DirectoryEntry], endOfListing: Bool)
    case readlink(FileStatus, target: String)
    /// Admin: a report, JSON-encoded (see `AdminReports`).
    case adminReport([UInt8])
    /// Admin backup: data frames with `size` bytes of a tar archive follow.
    case backup(size: UInt64)
}

extension Reply {
    /// Data frames follow this reply (FetchData's content, a backup's archive).
    public var isFollowedByData: Bool {
        switch self {
        case .fetchData, .backup: true
        default: false
        }
    }
}

/// Why the server broke a callback.
public enum CallBackReason: UInt8, Sendable, CaseIterable {
    case store = 1
    case setattr = 2
    case remove = 3
    case rename = 4
    case namespace = 5
    case expiry = 6
    case shutdown = 7
}

/// Server-to-client messages, each acknowledged with a pushAck frame of the same id.
public enum Push: Hashable, Sendable {
    /// The promises on these FIDs are broken.
    case callBack([FID], reason: CallBackReason)
    /// Forget every promise the server made you.
    case initCallBackState

    public var opcode: UInt16 {
        switch self {
        case .callBack: 1
        case .initCallBackState: 2
        }
    }
}

extension Request {
    /// Requests that change the volume.
    public var isChange: Bool {
        switch self {
        case .storeData, .storeStatus, .createFile, .makeDir, .symlink, .link, .removeFile, .removeDir, .rename, .write, .commit:
            true
        case .hello, .ping, .fetchStatus, .bulkStatus, .fetchData, .giveUpCallBacks, .giveUpAllCallBacks, .getVolumeStatus, .lookup, .read, .readDir,
             .readlink, .admin:
            false
        }
    }
}

extension Request {
    /// FIDs one BulkStatus may name (AFS's AFSCBMAX): its reply stays a few KiB, and its
    /// transaction holds the server's single database writer only briefly.
    public static let maximumBulkStatusCount = 50
}
