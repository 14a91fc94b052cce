/// The protocol version this build speaks; Hello refuses any other.
public let peachProtocolVersion: UInt16 = 2

/// Request types, named as AFS-3's file server interface names them.
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

    // NFS-style procedures, served statelessly: no callbacks granted, no per-client state.
    case getAttr = 32
    case setAttr = 33
    case lookup = 34
    case read = 35
    case write = 36
    case commit = 37
    case readDir = 38
    case create = 39
    case mkdir = 40
    case symlinkNFS = 41
    case remove = 42
    case rmdir = 43
    case renameNFS = 44
    case linkNFS = 45
    case readlink = 46

    /// True for the NFS-style procedures.
    public var isStateless: Bool { rawValue >= 32 }

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
        case .getAttr: "GETATTR"
        case .setAttr: "SETATTR"
        case .lookup: "LOOKUP"
        case .read: "READ"
        case .write: "WRITE"
        case .commit: "COMMIT"
        case .readDir: "READDIR"
        case .create: "CREATE"
        case .mkdir: "MKDIR"
        case .symlinkNFS: "SYMLINK"
        case .remove: "REMOVE"
        case .rmdir: "RMDIR"
        case .renameNFS: "RENAME"
        case .linkNFS: "LINK"
        case .readlink: "READLINK"
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

    public init(version: UInt16 = peachProtocolVersion, clientID: String, epoch: UInt64) {
        self.version = version
        self.clientID = clientID
        self.epoch = epoch
    }
}

public struct HelloReply: Hashable, Sendable {
    public var version: UInt16
    /// The server's restart counter.
    public var serverEpoch: UInt64
    /// True when the server no longer holds this client's callbacks (it was declared unreachable,
    /// or came back with a new epoch): every cached entry must be revalidated.
    public var callBacksLost: Bool

    public init(version: UInt16 = peachProtocolVersion, serverEpoch: UInt64, callBacksLost: Bool) {
        self.version = version
        self.serverEpoch = serverEpoch
        self.callBacksLost = callBacksLost
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

public enum Request: Hashable, Sendable {
    case hello(Hello)
    case ping
    case fetchStatus(FID)
    case bulkStatus([FID])
    /// Whole file or directory; the reply is followed by data frames.
    case fetchData(FID)
    /// Whole file of `size` bytes; the request is followed by data frames. `mtime` is the
    /// client's modification time of its copy (AFS's ClientModTime), so `cp -a` keeps times.
    case storeData(FID, size: UInt64, mtime: Timespec)
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

    // NFS-style, stateless.
    case getAttr(FID)
    case setAttr(FID, SetAttributes)
    case lookup(directory: FID, name: String)
    /// At most `count` bytes from `offset`; `count` may not exceed `Frame.dataChunkSize`.
    case read(FID, offset: UInt64, count: UInt32)
    /// Unstable until COMMIT, as NFSv3's UNSTABLE writes.
    case write(FID, offset: UInt64, data: [UInt8])
    /// Makes the file's written data durable.
    case commit(FID)
    /// Up to `count` entries from position `cookie` of the listing (sorted by name).
    case readDir(FID, cookie: UInt32, count: UInt32)
    case create(CreateRequest)
    case mkdir(CreateRequest)
    case symlinkNFS(CreateRequest)
    case remove(directory: FID, name: String)
    case rmdir(directory: FID, name: String)
    case renameNFS(fromDirectory: FID, fromName: String, toDirectory: FID, toName: String)
    case linkNFS(directory: FID, name: String, target: FID)
    case readlink(FID)

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
        case .getAttr: .getAttr
        case .setAttr: .setAttr
        case .lookup: .lookup
        case .read: .read
        case .write: .write
        case .commit: .commit
        case .readDir: .readDir
        case .create: .create
        case .mkdir: .mkdir
        case .symlinkNFS: .symlinkNFS
        case .remove: .remove
        case .rmdir: .rmdir
        case .renameNFS: .renameNFS
        case .linkNFS: .linkNFS
        case .readlink: .readlink
        }
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
