import Foundation
import GRDB
import PeachProtocol
import PeachSupport
import Synchronization

/// The server's storage, as an AFS vice partition: SQLite (WAL) holds vnodes, directory entries,
/// clients and callbacks, and the content of small files (`VolumeStore+Inline.swift`); larger
/// files' contents are plain files under `root/data`, named `<vnode>.<dataVersion>`, never
/// changed once written.
public final class VolumeStore: Sendable {
    /// The server root: volume.sqlite, data/, uploads/.
    let root: String
    let database: DatabasePool
    let dataDirectory: String
    let uploadDirectory: String
    /// The server's restart counter, bumped each time a store opens the database.
    public let epoch: UInt64
    /// How long a promise lasts, in seconds.
    public let callBackLifetime: Int64
    /// Maximum file size and quota, checked on every change.
    public let limits: VolumeLimits
    /// Files up to this size keep their content in the database (`--inline-max`).
    public let inlineMaximum: Int
    /// Held until `close()`: one server per root.
    private let rootLock: ExclusiveDirectoryLock.Held
    /// When changes reach the disk (`--sync`).
    public let syncPolicy: SyncPolicy
    /// Shared fsyncs of SQLite's write-ahead log.
    let groupSync: GroupSync
    /// Every write transaction passes through it (`runIfWriterFree`).
    let writerGate = WriterGate()
    /// NFS WRITEs in place against backups' links (`FileWorkGate`).
    let fileWorkGate = FileWorkGate()
    /// The server's metrics (`peach server --metrics`).
    public let metrics = ServerMetrics()
    /// Disk space that file content may not take (metadata changes need it).
    let reserve: DiskReserve
    /// This is the first start of a restored volume (`VolumeRestore` leaves the mark; the start
    /// takes it away). The restored callback table knows nothing of the promises the old server
    /// made after the backup, so for one lease no change is answered (NFSv4's grace period):
    /// by then every promise the old server made has run out unheard, or its client has said
    /// Hello and been told that its promises are lost.
    public let startedAfterRestore: Bool
    /// A backup is linking or packing version files (`backup`): one at a time, and while it
    /// runs an NFS WRITE checks whether the version file it writes in place is linked.
    let backupRunning = Atomic<Bool>(false)

    /// The owner and mode of a new volume's root directory (`peach server --root-owner
    /// --root-mode`): with TLS, clients' root is squashed, so a root:root 0755 volume root is
    /// writable by nobody until it is given to someone.
    /// What is not given is root's, 0755.
    public struct RootDirectory: Sendable {
        public var owner: (uid: UInt32, gid: UInt32)?
        public var mode: UInt32?

        public init(owner: (uid: UInt32, gid: UInt32)? = nil, mode: UInt32? = nil) {
            self.owner = owner
            self.mode = mode
        }

        /// Whether a root directory with this status is what was asked for.
        func matches(_ status: FileStatus) -> Bool {
            (owner.map { $0.uid == status.uid && $0.gid == status.gid } ?? true) && (mode.map { $0 == status.mode & 0o7777 } ?? true)
        }
    }

    /// `newRoot` was given for a volume that exists with another root directory.
    public struct RootDirectoryMismatch: Error, CustomStringConvertible {
        public var description: String
    }

    /// - Parameter newRoot: the root directory's owner and mode if the volume is new. For a
    ///   volume that exists they must match its root's (RootDirectoryMismatch otherwise): the
    ///   server never changes a root directory behind its owner's back.
    public init(root: String, callBackLifetime: Int64 = 3600, limits: VolumeLimits = VolumeLimits(),
                syncPolicy: SyncPolicy = .onclose, newRoot: RootDirectory? = nil,
                inlineMaximum: Int = VolumeStore.defaultInlineMaximum) throws {
        let fm = FileManager.default
        self.root = root
        dataDirectory = root + "/data"
        uploadDirectory = root + "/uploads"
        reserve = DiskReserve(directory: root)
        var isDirectory: ObjCBool = false
        if fm.fileExists(atPath: root, isDirectory: &isDirectory), !isDirectory.boolValue {
            throw ExclusiveDirectoryLock.Busy(description: "\(root) is not a directory")
        }
        for dir in [root, dataDirectory, uploadDirectory] {
            try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        }
        rootLock = try ExclusiveDirectoryLock.acquire(root, what: "server root")
        var configuration = Configuration()
        configuration.prepareDatabase { db in
            // No fsync per commit: a reply that must wait for the disk waits for a shared fsync
            // of the log (GroupSync), so concurrent changes share one.
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
        }
        database = try DatabasePool(path: root + "/volume.sqlite", configuration: configuration)
        try Schema.migrator.migrate(database)
        self.callBackLifetime = callBackLifetime
        self.limits = limits
        self.inlineMaximum = max(0, min(inlineMaximum, Frame.dataChunkSize))
        self.syncPolicy = syncPolicy
        epoch = try database.write { db in
            let previous = try Int64.fetchOne(db, cached: "SELECT value FROM serverState WHERE key = 'epoch'") ?? 0
            try db.execute(cached: "INSERT OR REPLACE INTO serverState (key, value) VALUES ('epoch', ?)", arguments: [previous + 1])
            if try Int.fetchOne(db, cached: "SELECT COUNT(*) FROM vnode") == 0 {
                let now = Timespec.now()
                _ = try VnodeTable.insert(db, type: .directory, mode: newRoot?.mode ?? 0o755, uid: newRoot?.owner?.uid ?? 0,
                                          gid: newRoot?.owner?.gid ?? 0, size: 4096, linkCount: 2, parent: nil, rdev: 0,
                                          symlinkTarget: nil, now: now, uniquifier: FID.root.unique)
            } else if let newRoot {
                let current = try VnodeTable.status(db, Int64(FID.root.vnode))
                guard newRoot.matches(current) else {
                    throw RootDirectoryMismatch(description: """
                        the volume in \(root) exists, and its root directory is \(current.uid):\(current.gid) \
                        mode \(String(current.mode & 0o7777, radix: 8)); --root-owner and --root-mode apply when a volume is \
                        made (change an existing one with chown and chmod through a mount whose root is not squashed)
                        """)
                }
            }
            return UInt64(previous + 1)
        }
        startedAfterRestore = try database.write { db in
            let restored = try Int64.fetchOne(db, cached: "SELECT value FROM serverState WHERE key = 'restored'") != nil
            try db.execute(cached: "DELETE FROM serverState WHERE key = 'restored'")
            return restored
        }
        // The log exists from the first write on, and stays while the database is open.
        groupSync = try GroupSync(directory: dataDirectory, log: root + "/volume.sqlite-wal", duration: metrics.fsyncDuration)
        try groupSync.sync()
        try removeOrphans()
    }

    /// Releases the root for another server (the store is not used after this), once every
    /// commit is on disk.
    public func releaseRoot() {
        try? groupSync.sync()
        rootLock.release()
    }

    /// Waits until every commit made so far is on disk (one fsync shared with concurrent callers).
    public func makeDurable() throws { try groupSync.sync() }

    /// The background round of `--sync onclose` and `delayed`: syncs commits that did not wait.
    public func syncPendingCommits() {
        if groupSync.hasPending { try? groupSync.sync() }
    }

    /// Start-up clean-up: unfinished uploads, a backup's staging directory and archive left by a
    /// server that was killed while packing one, and data files no vnode points at (a crash
    /// between writing a new version and committing it, or between committing and deleting the old one).
    private func removeOrphans() throws {
        let fm = FileManager.default
        for name in (try? fm.contentsOfDirectory(atPath: root)) ?? [] where name.hasPrefix(Self.backupStagingPrefix) {
            try? fm.removeItem(atPath: root + "/" + name)
        }
        for name in (try? fm.contentsOfDirectory(atPath: uploadDirectory)) ?? [] {
            try? fm.removeItem(atPath: uploadDirectory + "/" + name)
        }
        let current = try database.read { db in
            Set(try Row.fetchAll(db, sql: """
                SELECT id, dataVersion FROM vnode WHERE type = ? AND id NOT IN (SELECT vnode FROM inlineContent)
                """, arguments: [FileType.regular.rawValue])
                .map { "\($0["id"] as Int64).\($0["dataVersion"] as Int64)" })
        }
        for name in (try? fm.contentsOfDirectory(atPath: dataDirectory)) ?? [] where !current.contains(name) {
            try? fm.removeItem(atPath: dataDirectory + "/" + name)
        }
    }

    func dataPath(vnode: Int64, version: UInt64) -> String { "\(dataDirectory)/\(vnode).\(version)" }

    /// A fresh path for an incoming StoreData.
    public func newUploadPath() -> String { uploadDirectory + "/" + UUID().uuidString }

    private func expiry(now: Timespec) -> Int64 { now.seconds + callBackLifetime }

    /// Records promises on `vnodes` and returns the expiry the reply announces: 0 (no promise)
    /// for a stateless requester, and when the caller may not read one of them (a promise lets
    /// its holder make every change to the object wait for it, so only a reader gets one).
    /// `known`: statuses the caller has read already in this transaction, as they now are.
    @discardableResult
    func grant(_ db: Database, _ requester: Requester, vnodes: [Int64], now: Timespec, known: [FileStatus] = []) throws -> UInt64 {
        guard requester.grantsCallBacks else { return 0 }
        if let identity = requester.identity, !identity.isSuperUser {
            for vnode in vnodes {
                let status = try known.first(where: { Int64($0.fid.vnode) == vnode }) ?? VnodeTable.status(db, vnode)
                if !AccessCheck.mayHoldPromise(on: status, for: identity) { return 0 }
            }
        }
        try CallBackTable.grant(db, client: requester.clientID, vnodes: vnodes, expiresAt: expiry(now: now))
        metrics.callBacksGranted.increment(by: vnodes.count)
        return UInt64(expiry(now: now))
    }

    // MARK: Clients

    /// Records a client's Hello. Returns true when the client must treat every promise as gone:
    /// the server declared it unreachable since it last spoke, or a break to it is still
    /// unacknowledged (it was away, or the server restarted, before the break reached it).
    /// The id belongs to the principal `owner` that first introduced it (`Principal.ownerKey`):
    /// anyone else is refused with accessDenied, so no one can take over another's promises,
    /// acknowledge its breaks or be answered from its recorded replies.
    ///
    /// A principal has at most `maximumIDs` ids: a new one past it replaces the principal's
    /// longest-silent id that is not connected (`isConnected`) and holds no live promise, or is
    /// refused with `busy`. (Ids made up by the thousand could otherwise grow the table, and each
    /// one holding a promise makes changes wait for it.)
    public func introduce(client: String, epoch: UInt64, owner: String = Principal.localRoot.ownerKey,
                          maximumIDs: Int = .max, isConnected: (String) -> Bool = { _ in false }) throws -> Bool {
        let now = Timespec.now().seconds
        // An opaque counter: any 64 bits are stored as they are (Int64(epoch) trapped at 2^63,
        // found by the request fuzzer).
        let storedEpoch = Int64(bitPattern: epoch)
        return try writeTransaction { db in
            let row = try Row.fetchOne(db, cached: "SELECT epoch, callBacksLost, owner FROM client WHERE id = ?", arguments: [client])
            if let claimed = row?["owner"] as String?, claimed != owner { throw StatusCode.accessDenied }
            if row == nil { try Self.makeRoomForClientID(db, owner: owner, maximum: maximumIDs, now: now, isConnected: isConnected) }
            // On a restored volume, a client it does not know may still hold promises of the old
            // server, made after the backup: it is told to revalidate (a new one loses nothing).
            let lost = try (row == nil && startedAfterRestore) || (row?["callBacksLost"] as Int64? ?? 0) != 0
                || CallBackTable.hasUnsettledBreaks(db, client: client)
            let sameEpoch = (row?["epoch"] as Int64?) == storedEpoch
            // A client told it lost its promises drops them all; so did a restarted cache manager,
            // which also numbers its requests anew.
            if lost || !sameEpoch { try CallBackTable.dropAll(db, client: client) }
            if !sameEpoch { try ReplayTable.forget(db, client: client) }
            try db.execute(cached: """
                INSERT INTO client (id, epoch, callBacksLost, lastSeen, owner) VALUES (?, ?, 0, ?, ?)
                ON CONFLICT(id) DO UPDATE SET epoch = excluded.epoch, callBacksLost = 0, lastSeen = excluded.lastSeen,
                    owner = excluded.owner
                """, arguments: [client, storedEpoch, now, owner])
            return lost
        }
    }

    /// The write transaction of a change: for a numbered request, a repeat gets the reply recorded
    /// the first time (`ReplayTable.Replayed`, nothing is changed), and the first time's reply is
    /// recorded in the same transaction as the change.
    func writeOnce<Value>(_ client: Requester, _ opcode: Opcode, reply: (Mutation<Value>) -> Reply,
                          _ body: (Database) throws -> Mutation<Value>) throws -> Mutation<Value> {
        try writeTransaction { db in
            guard let number = client.number else { return try body(db) }
            try ReplayTable.check(db, client: client.clientID, number: number, opcode: opcode)
            let mutation = try body(db)
            try ReplayTable.record(db, client: client.clientID, number: number, reply: reply(mutation))
            return mutation
        }
    }

    /// A client that missed a break loses every promise, and is told so on its next Hello.
    public func declareUnreachable(client: String) throws {
        try writeTransaction { db in
            try CallBackTable.dropAll(db, client: client)
            try db.execute(cached: "UPDATE client SET callBacksLost = 1 WHERE id = ?", arguments: [client])
        }
    }

    // MARK: Status and data

    public func fetchStatus(_ fid: FID, client: Requester) throws -> (FileStatus, UInt64) {
        let now = Timespec.now()
        // A read first, which never waits for SQLite's single writer: enough for a stateless
        // client, and for an AFS client whose promise on the FID still has most of its life
        // (the reply announces that promise, unchanged).
        let (status, held) = try database.read { db in
            let (vnode, status) = try VnodeTable.resolve(db, fid)
            let held = client.grantsCallBacks ? try CallBackTable.expiry(db, client: client.clientID, vnode: vnode) : nil
            return (status, held)
        }
        guard client.grantsCallBacks else { return (status, 0) }
        if let held, held - now.seconds > callBackLifetime / 2 { return (status, UInt64(held)) }
        return try writeTransaction { db in
            let (vnode, status) = try VnodeTable.resolve(db, fid)
            return (status, try grant(db, client, vnodes: [vnode], now: now, known: [status]))
        }
    }

    public func bulkStatus(_ fids: [FID], client: Requester) throws -> ([BulkStatusEntry], UInt64) {
        guard fids.count <= Request.maximumBulkStatusCount else { throw StatusCode.invalidArgument }
        let now = Timespec.now()
        // A read first, as FetchStatus does: when the client holds a promise with most of its life
        // on each of them, no writer is taken, and the reply announces the earliest expiry.
        let (entries, earliestHeld) = try database.read { db -> ([BulkStatusEntry], Int64?) in
            var entries: [BulkStatusEntry] = []
            var earliest: Int64? = .max
            for fid in fids {
                do {
                    let (vnode, status) = try VnodeTable.resolve(db, fid)
                    entries.append(.status(status))
                    guard client.grantsCallBacks, let held = earliest else { continue }
                    let expiry = try CallBackTable.expiry(db, client: client.clientID, vnode: vnode)
                    earliest = expiry.flatMap { $0 - now.seconds > callBackLifetime / 2 ? min(held, $0) : nil }
                } catch let code as StatusCode {
                    entries.append(.error(code))
                }
            }
            return (entries, earliest)
        }
        guard client.grantsCallBacks else { return (entries, 0) }
        if let earliestHeld { return (entries, earliestHeld == .max ? 0 : UInt64(earliestHeld)) }
        return try writeTransaction { db in
            var entries: [BulkStatusEntry] = []
            var announced: UInt64? = nil
            for fid in fids {
                do {
                    let (vnode, status) = try VnodeTable.resolve(db, fid)
                    // One expiry covers every entry: 0 if any of them got no promise.
                    let expiry = try grant(db, client, vnodes: [vnode], now: now, known: [status])
                    announced = min(announced ?? expiry, expiry)
                    entries.append(.status(status))
                } catch let code as StatusCode {
                    entries.append(.error(code))
                }
            }
            return (entries, announced ?? 0)
        }
    }

    /// What FetchData sends after its reply.
    public enum Content: Sendable {
        /// A regular file's data: an open descriptor of an immutable version file, positioned at
        /// the range's start and owned by the caller, and how many bytes to send from there.
        case file(FileHandle, length: UInt64)
        /// A directory listing or a symlink target.
        case bytes([UInt8])
    }

    /// The status and the content in `range` of a file, directory or symlink, with a fresh promise.
    public func fetchData(_ fid: FID, range: ByteRange = .whole, client: Requester) throws -> (FileStatus, UInt64, Content) {
        for _ in 0..<8 {
            let now = Timespec.now()
            let (status, expiry, content): (FileStatus, UInt64, Content?) = try writeTransaction { db in
                let (vnode, status) = try VnodeTable.resolve(db, fid)
                switch status.type {
                case .directory:
                    // The AFS client looks names up in the listing it fetched: search permission
                    // is enough, as it is for a lookup.
                    try AccessCheck.requireSome(AccessCheck.read | AccessCheck.search, on: status, for: client.identity)
                case .regular:
                    try AccessCheck.requireData(AccessCheck.read, on: status, for: client.identity)
                default:
                    break
                }
                let expiry = try grant(db, client, vnodes: [vnode], now: now, known: [status])
                switch status.type {
                case .directory:
                    return (status, expiry, .bytes(Self.part(Array(buffer: DirectoryListingCodec.encode(try VnodeTable.entries(db, directory: vnode))), range)))
                case .symlink:
                    let target = try String.fetchOne(db, cached: "SELECT symlinkTarget FROM vnode WHERE id = ?", arguments: [vnode]) ?? ""
                    return (status, expiry, .bytes(Self.part(Array(target.utf8), range)))
                case .regular:
                    if range.clamped(to: status.size).isEmpty { return (status, expiry, .bytes([])) }
                    if let bytes = try inlinePart(db, vnode: vnode, range: range) { return (status, expiry, .bytes(bytes)) }
                    // Opened outside the transaction: a store that replaces this version between
                    // here and the open makes the open fail, and the loop tries again.
                    return (status, expiry, nil)
                default:
                    return (status, expiry, .bytes([]))
                }
            }
            if let content { return (status, expiry, content) }
            if let handle = FileHandle(forReadingAtPath: dataPath(vnode: Int64(fid.vnode), version: status.dataVersion)) {
                let part = range.clamped(to: status.size)
                do { try handle.seek(toOffset: part.lowerBound) } catch { throw StatusCode.ioError }
                return (status, expiry, .file(handle, length: UInt64(part.count)))
            }
        }
        throw StatusCode.ioError
    }

    /// Makes an uploaded file the new content of `fid`: one transaction points the vnode at the
    /// new version, applies the mode and owner changes that rode along (checked as a StoreStatus
    /// would check them), and breaks the other clients' promises; then the old version goes.
    /// With `baseVersion` the store is conditional: versionConflict unless the file is still at
    /// that data version.
    public func store(_ fid: FID, client: Requester, uploadPath: String, size: UInt64, mtime: Timespec,
                      status change: StoreStatusChange = StoreStatusChange(), baseVersion: UInt64? = nil) throws -> Mutation<FileStatus> {
        try store(fid, client: client, content: .file(uploadPath), size: size, mtime: mtime, status: change, baseVersion: baseVersion)
    }

    /// A store whose content is a file up to `inlineMaximum` bytes goes into the database, in the
    /// same transaction; a larger one's upload file becomes the new version file.
    public func store(_ fid: FID, client: Requester, content: UploadedContent, size: UInt64, mtime: Timespec,
                      status change: StoreStatusChange = StoreStatusChange(), baseVersion: UInt64? = nil) throws -> Mutation<FileStatus> {
        let now = Timespec.now()
        var oldFile: String?
        let uploadPath: String? = if case .file(let path) = content { path } else { nil }
        do {
            let newSize = try WireValues.fileSize(size, maximumFileSize: limits.maximumFileSize)
            let inline: [UInt8]? = switch content {
            case .bytes(let bytes) where bytes.count <= inlineMaximum: bytes
            case .bytes: throw StatusCode.invalidArgument  // the connection buffers only small stores
            case .file(let path) where size <= UInt64(inlineMaximum): try Self.readSmallUpload(path, size: size)
            case .file: nil
            }
            if let inline, UInt64(inline.count) != size { throw StatusCode.invalidArgument }
            let mutation = try writeOnce(client, .storeData, reply: \.reply) { db -> Mutation<FileStatus> in
                let (vnode, status) = try VnodeTable.resolve(db, fid)
                guard status.type == .regular else { throw status.type == .directory ? StatusCode.isDirectory : StatusCode.invalidArgument }
                try AccessCheck.requireWritable(client.identity)
                try AccessCheck.requireData(AccessCheck.write, on: status, for: client.identity)
                if let baseVersion, baseVersion != status.dataVersion { throw StatusCode.versionConflict }
                try checkQuota(db, growth: newSize - Int64(status.size))
                try dropPrivilegeBitsOnWrite(db, vnode, status, by: client.identity)
                if !change.isEmpty {
                    let attributes = SetAttributes(mode: change.mode, uid: change.uid, gid: change.gid,
                                                   atime: change.atime.map { .at($0) })
                    let current = try VnodeTable.status(db, vnode)
                    let mode = try SetAttributeRules.check(attributes, on: current, for: client.identity)
                    let atime = change.atime ?? current.atime
                    try db.execute(cached: """
                        UPDATE vnode SET mode = ?, uid = ?, gid = ?, atimeSeconds = ?, atimeNanoseconds = ? WHERE id = ?
                        """, arguments: [mode, change.uid ?? current.uid, change.gid ?? current.gid, atime.seconds, atime.nanoseconds, vnode])
                }
                let newVersion = status.dataVersion + 1
                let wasInline = try Self.dropInline(db, vnode: vnode)
                if !wasInline && status.size > 0 { oldFile = dataPath(vnode: vnode, version: status.dataVersion) }
                if let inline {
                    if !inline.isEmpty { try Self.setInline(db, vnode: vnode, inline) }
                } else if let uploadPath {
                    guard Glibc.rename(uploadPath, dataPath(vnode: vnode, version: newVersion)) == 0 else { throw StatusCode.ioError }
                    groupSync.noteDirectoryChange()
                }
                try db.execute(cached: """
                    UPDATE vnode SET size = ?, dataVersion = ?, mtimeSeconds = ?, mtimeNanoseconds = ?,
                        ctimeSeconds = ?, ctimeNanoseconds = ? WHERE id = ?
                    """, arguments: [newSize, Int64(newVersion), mtime.seconds, mtime.nanoseconds, now.seconds, now.nanoseconds, vnode])
                let breaks = try CallBackTable.breakAll(db, vnodes: [vnode], except: client.clientID, now: now.seconds)
                let stored = try VnodeTable.status(db, vnode)
                let expiry = try grant(db, client, vnodes: [vnode], now: now, known: [stored])
                return Mutation(value: stored, breaks: breaks, reason: .store, callBackExpiry: expiry)
            }
            if let oldFile { unlink(oldFile) }
            if inline != nil, let uploadPath { unlink(uploadPath) }
            return mutation
        } catch {
            if let uploadPath { unlink(uploadPath) }
            throw error
        }
    }

    /// A small upload file's bytes, to go inline.
    private static func readSmallUpload(_ path: String, size: UInt64) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path), UInt64(data.count) == size else { throw StatusCode.ioError }
        return [UInt8](data)
    }

    /// StoreStatus and SETATTR. A size change makes a new version: the data ranges of the old one
    /// are copied (holes stay holes) before the transaction, so SQLite's writer is not held
    /// during the copy; if the file changed meanwhile, the copy is made again.
    public func setAttributes(_ fid: FID, _ attributes: SetAttributes, client: Requester) throws -> Mutation<FileStatus> {
        let newSize = try attributes.size.map { try WireValues.fileSize($0, maximumFileSize: limits.maximumFileSize) }
        for _ in 0..<8 {
            let resized = try newSize.flatMap { try resizedCopy(fid, size: $0, for: client.identity) }
            // A copy the transaction did not take (refused, failed, or made stale) goes at once.
            defer { if let resized { unlink(resized.path) } }
            do {
                return try setAttributes(fid, attributes, newSize: newSize, resized: resized, client: client)
            } catch is VersionMoved {
                continue
            }
        }
        throw StatusCode.ioError
    }

    /// A new version file holding the first `size` bytes of `fid`'s current version.
    private struct ResizedCopy {
        var path: String
        var basedOn: UInt64
    }

    /// The file changed between the copy and the transaction.
    private struct VersionMoved: Error {}

    private func resizedCopy(_ fid: FID, size: Int64, for identity: Identity?) throws -> ResizedCopy? {
        // A file that ends small goes inline, in the transaction itself.
        guard size > inlineMaximum else { return nil }
        let (vnode, status, inline) = try database.read { db in
            let (vnode, status) = try VnodeTable.resolve(db, fid)
            return (vnode, status, status.type == .regular ? try Self.inlineBytes(db, vnode: vnode) : nil)
        }
        guard status.type == .regular, UInt64(size) != status.size else { return nil }
        // Checked again in the transaction; here so a caller without the right costs no copy.
        try AccessCheck.requireWritable(identity)
        try AccessCheck.requireData(AccessCheck.write, on: status, for: identity)
        let path = newUploadPath()
        if let inline {
            // A small file grows past the limit: its bytes start the new version file.
            try SparseCopy.write(inline, to: path, size: size)
            return ResizedCopy(path: path, basedOn: status.dataVersion)
        }
        let source = status.size > 0 ? dataPath(vnode: vnode, version: status.dataVersion) : nil
        do {
            try SparseCopy.copy(from: source, to: path, size: size)
        } catch is SparseCopy.SourceGone {
            return ResizedCopy(path: path, basedOn: .max)  // replaced meanwhile: the transaction retries
        }
        return ResizedCopy(path: path, basedOn: status.dataVersion)
    }

    private func setAttributes(_ fid: FID, _ attributes: SetAttributes, newSize: Int64?, resized: ResizedCopy?,
                               client: Requester) throws -> Mutation<FileStatus> {
        let now = Timespec.now()
        var removeAfterCommit: String?
        let mutation = try writeTransaction { db -> Mutation<FileStatus> in
            let (vnode, status) = try VnodeTable.resolve(db, fid)
            let mode = try SetAttributeRules.check(attributes, on: status, for: client.identity)
            if let newSize, UInt64(newSize) != status.size {
                guard status.type == .regular else { throw status.type == .directory ? StatusCode.isDirectory : StatusCode.invalidArgument }
                try checkQuota(db, growth: newSize - Int64(status.size))
                let newVersion = status.dataVersion + 1
                if newSize <= inlineMaximum {
                    let bytes = try smallContent(db, vnode: vnode, status: status, length: Int(newSize))
                    if !(try Self.dropInline(db, vnode: vnode)) && status.size > 0 {
                        removeAfterCommit = dataPath(vnode: vnode, version: status.dataVersion)
                    }
                    if !bytes.isEmpty { try Self.setInline(db, vnode: vnode, bytes) }
                } else {
                    guard let resized, resized.basedOn == status.dataVersion else { throw VersionMoved() }
                    guard Glibc.rename(resized.path, dataPath(vnode: vnode, version: newVersion)) == 0 else { throw StatusCode.ioError }
                    groupSync.noteDirectoryChange()
                    if !(try Self.dropInline(db, vnode: vnode)) { removeAfterCommit = dataPath(vnode: vnode, version: status.dataVersion) }
                }
                try db.execute(cached: """
                    UPDATE vnode SET size = ?, dataVersion = ?, mtimeSeconds = ?, mtimeNanoseconds = ? WHERE id = ?
                    """, arguments: [newSize, Int64(newVersion), now.seconds, now.nanoseconds, vnode])
            }
            // Mode, owner, times and ctime in one statement, from the status read above (a size
            // change, above, set the mtime to now). No trigger watches these columns.
            let resized = newSize.map { UInt64($0) != status.size } ?? false
            let atime = attributes.atime.map { resolve($0, now: now) } ?? status.atime
            let mtime = attributes.mtime.map { resolve($0, now: now) } ?? (resized ? now : status.mtime)
            try db.execute(cached: """
                UPDATE vnode SET mode = ?, uid = ?, gid = ?, atimeSeconds = ?, atimeNanoseconds = ?,
                    mtimeSeconds = ?, mtimeNanoseconds = ?, ctimeSeconds = ?, ctimeNanoseconds = ? WHERE id = ?
                """, arguments: [mode, attributes.uid ?? status.uid, attributes.gid ?? status.gid, atime.seconds, atime.nanoseconds,
                                 mtime.seconds, mtime.nanoseconds, now.seconds, now.nanoseconds, vnode])
            let breaks = try CallBackTable.breakAll(db, vnodes: [vnode], except: client.clientID, now: now.seconds)
            let changed = try VnodeTable.status(db, vnode)
            let expiry = try grant(db, client, vnodes: [vnode], now: now, known: [changed])
            return Mutation(value: changed, breaks: breaks, reason: .setattr, callBackExpiry: expiry)
        }
        if let removeAfterCommit { try? FileManager.default.removeItem(atPath: removeAfterCommit) }
        return mutation
    }

    /// A write by anyone but root takes away the set-user-ID bit (and set-group-ID of a
    /// group-executable file), so nobody can plant code that runs as someone else.
    func dropPrivilegeBitsOnWrite(_ db: Database, _ vnode: Int64, _ status: FileStatus, by identity: Identity?) throws {
        guard let identity, !identity.isSuperUser else { return }
        let mode = status.mode & ~FileStatus.privilegeBits(status.mode)
        guard mode != status.mode else { return }
        try db.execute(cached: "UPDATE vnode SET mode = ? WHERE id = ?", arguments: [mode, vnode])
    }

    /// Throws `quotaExceeded` if the volume's bytes grown by `growth` would pass the quota.
    func checkQuota(_ db: Database, growth: Int64) throws {
        guard let quota = limits.quota, growth > 0 else { return }
        let used = try Int64.fetchOne(db, cached: "SELECT value FROM serverState WHERE key = 'volumeBytes'") ?? 0
        guard used.addingReportingOverflow(growth).partialValue <= Int64(clamping: quota) else { throw StatusCode.quotaExceeded }
    }

    /// The bytes of regular-file content and symlink targets the volume holds (what `--quota` limits).
    public func volumeBytes() throws -> UInt64 {
        try database.read { db in UInt64(clamping: try Int64.fetchOne(db, cached: "SELECT value FROM serverState WHERE key = 'volumeBytes'") ?? 0) }
    }

    private func resolve(_ time: TimeToSet, now: Timespec) -> Timespec {
        switch time {
        case .now: now
        case .at(let t): t
        }
    }

    // MARK: Namespace

    static func validate(name: String) throws {
        guard !name.isEmpty, name != ".", name != "..", !name.contains("/"), !name.utf8.contains(0) else {
            throw StatusCode.invalidArgument
        }
        guard name.utf8.count <= 255 else { throw StatusCode.nameTooLong }
    }

    /// A symlink target: not empty, no NUL, at most PATH_MAX bytes (as Linux's symlink(2)).
    static func validate(symlinkTarget: String) throws {
        guard !symlinkTarget.isEmpty, !symlinkTarget.utf8.contains(0) else { throw StatusCode.invalidArgument }
        guard symlinkTarget.utf8.count < 4096 else { throw StatusCode.nameTooLong }
    }

    /// CreateFile, MakeDir and Symlink. Fails with `.exists` when the name is taken (O_EXCL semantics:
    /// the client decides what a plain O_CREAT on an existing file means).
    public func create(_ request: CreateRequest, client: Requester) throws -> Mutation<NamespaceChange> {
        try Self.validate(name: request.name)
        let isDevice = request.type == .characterDevice || request.type == .blockDevice
        let rdev = isDevice ? try WireValues.deviceNumber(request.rdev) : 0
        if request.type == .symlink { try Self.validate(symlinkTarget: request.symlinkTarget) }
        let now = Timespec.now()
        return try writeOnce(client, .createFile, reply: \.reply) { db in
            let (dir, dirStatus) = try VnodeTable.directory(db, request.directory)
            try AccessCheck.requireChange(in: dirStatus, for: client.identity)
            if isDevice, let identity = client.identity, !identity.isSuperUser { throw StatusCode.permissionDenied }
            if try VnodeTable.lookup(db, directory: dir, name: request.name) != nil { throw StatusCode.exists }
            let isDirectory = request.type == .directory
            let target = request.type == .symlink ? request.symlinkTarget : nil
            let size: UInt64 = isDirectory ? 4096 : UInt64(target?.utf8.count ?? 0)
            if target != nil { try checkQuota(db, growth: Int64(size)) }
            let owner = NewObjectOwnership(request, in: dirStatus, by: client.identity)
            let vnode = try VnodeTable.insert(db, type: request.type, mode: owner.mode, uid: owner.uid,
                                              gid: owner.gid, size: size, linkCount: isDirectory ? 2 : 1,
                                              parent: isDirectory ? dir : nil, rdev: UInt64(rdev), symlinkTarget: target, now: now)
            try db.execute(cached: "INSERT INTO dirEntry (directory, name, child) VALUES (?, ?, ?)",
                           arguments: [dir, request.name, vnode])
            if isDirectory { try db.execute(cached: "UPDATE vnode SET linkCount = linkCount + 1 WHERE id = ?", arguments: [dir]) }
            try VnodeTable.touch(db, dir, content: true, now: now)
            return try finish(db, client: client, changed: [dir], granted: [dir, vnode], reason: .namespace, now: now,
                              NamespaceChange(directory: VnodeTable.status(db, dir), target: VnodeTable.status(db, vnode)))
        }
    }

    public func link(directory: FID, name: String, target: FID, client: Requester) throws -> Mutation<NamespaceChange> {
        try Self.validate(name: name)
        let now = Timespec.now()
        return try writeOnce(client, .link, reply: \.reply) { db in
            let (dir, dirStatus) = try VnodeTable.directory(db, directory)
            try AccessCheck.requireChange(in: dirStatus, for: client.identity)
            let (vnode, status) = try VnodeTable.resolve(db, target)
            guard status.type != .directory else { throw StatusCode.permissionDenied }
            if try VnodeTable.lookup(db, directory: dir, name: name) != nil { throw StatusCode.exists }
            try db.execute(cached: "INSERT INTO dirEntry (directory, name, child) VALUES (?, ?, ?)", arguments: [dir, name, vnode])
            try db.execute(cached: "UPDATE vnode SET linkCount = linkCount + 1 WHERE id = ?", arguments: [vnode])
            try VnodeTable.touch(db, vnode, content: false, now: now)
            try VnodeTable.touch(db, dir, content: true, now: now)
            return try finish(db, client: client, changed: [dir, vnode], granted: [dir, vnode], reason: .namespace, now: now,
                              NamespaceChange(directory: VnodeTable.status(db, dir), target: VnodeTable.status(db, vnode)))
        }
    }

    /// RemoveFile (`directory == false`) and RemoveDir.
    public func remove(directory: FID, name: String, isDirectory: Bool, client: Requester) throws -> Mutation<NamespaceChange> {
        let now = Timespec.now()
        var deletedData: String?
        let mutation = try writeOnce(client, .removeFile, reply: \.reply) { db -> Mutation<NamespaceChange> in
            let (dir, dirStatus) = try VnodeTable.directory(db, directory)
            try AccessCheck.requireChange(in: dirStatus, for: client.identity)
            guard let vnode = try VnodeTable.lookup(db, directory: dir, name: name) else { throw StatusCode.notFound }
            let status = try VnodeTable.status(db, vnode)
            try AccessCheck.requireStickyOwnership(status, in: dirStatus, for: client.identity)
            if isDirectory {
                guard status.type == .directory else { throw StatusCode.notDirectory }
                guard try Int.fetchOne(db, cached: "SELECT COUNT(*) FROM dirEntry WHERE directory = ?", arguments: [vnode]) == 0 else {
                    throw StatusCode.notEmpty
                }
            } else {
                guard status.type != .directory else { throw StatusCode.isDirectory }
            }
            deletedData = try unlinkEntry(db, directory: dir, name: name, vnode: vnode, status: status, now: now)
            try VnodeTable.touch(db, dir, content: true, now: now)
            let remaining = try? VnodeTable.status(db, vnode)
            // A removed object is reported with a link count of 0, so clients holding it open know.
            var gone = status
            gone.linkCount = 0
            return try finish(db, client: client, changed: [dir, vnode], granted: remaining == nil ? [dir] : [dir, vnode],
                              removed: remaining == nil ? [status.fid] : [], reason: .remove, now: now,
                              NamespaceChange(directory: VnodeTable.status(db, dir), target: remaining ?? gone))
        }
        if let deletedData { try? FileManager.default.removeItem(atPath: deletedData) }
        return mutation
    }

    /// Removes one name; deletes the vnode when it was the last. Returns a data file to delete after commit.
    private func unlinkEntry(_ db: Database, directory: Int64, name: String, vnode: Int64, status: FileStatus,
                             now: Timespec) throws -> String? {
        try db.execute(cached: "DELETE FROM dirEntry WHERE directory = ? AND name = ?", arguments: [directory, name])
        if status.type == .directory {
            try db.execute(cached: "UPDATE vnode SET linkCount = linkCount - 1 WHERE id = ?", arguments: [directory])
            try db.execute(cached: "DELETE FROM vnode WHERE id = ?", arguments: [vnode])
            return nil
        }
        if status.linkCount <= 1 {
            let wasInline = try status.type == .regular && Self.dropInline(db, vnode: vnode)
            try db.execute(cached: "DELETE FROM vnode WHERE id = ?", arguments: [vnode])
            return status.type == .regular && !wasInline && status.size > 0 ? dataPath(vnode: vnode, version: status.dataVersion) : nil
        }
        try db.execute(cached: "UPDATE vnode SET linkCount = linkCount - 1 WHERE id = ?", arguments: [vnode])
        try VnodeTable.touch(db, vnode, content: false, now: now)
        return nil
    }

    public func rename(from fromDirectory: FID, _ fromName: String, to toDirectory: FID, _ toName: String,
                       client: Requester) throws -> Mutation<NamespaceChange> {
        try Self.validate(name: toName)
        let now = Timespec.now()
        var deletedData: String?
        let mutation = try writeOnce(client, .rename, reply: \.reply) { db -> Mutation<NamespaceChange> in
            let (from, fromStatus) = try VnodeTable.directory(db, fromDirectory)
            let (to, toStatus) = try VnodeTable.directory(db, toDirectory)
            try AccessCheck.requireChange(in: fromStatus, for: client.identity)
            try AccessCheck.requireChange(in: toStatus, for: client.identity)
            guard let moved = try VnodeTable.lookup(db, directory: from, name: fromName) else { throw StatusCode.notFound }
            let movedStatus = try VnodeTable.status(db, moved)
            try AccessCheck.requireStickyOwnership(movedStatus, in: fromStatus, for: client.identity)
            if movedStatus.type == .directory, from != to {
                // Its ".." changes: the moved directory itself must be writable.
                try AccessCheck.require(AccessCheck.write, on: movedStatus, for: client.identity)
            }
            var changed: Set<Int64> = [from, to, moved]
            var removed: [FID] = []
            if let existing = try VnodeTable.lookup(db, directory: to, name: toName) {
                if existing == moved {
                    // POSIX: renaming a name onto another link of the same file does nothing.
                    return try finish(db, client: client, changed: [], granted: [from, to], reason: .rename, now: now,
                                      NamespaceChange(directory: VnodeTable.status(db, from), target: movedStatus,
                                                      otherDirectory: VnodeTable.status(db, to)))
                }
                let existingStatus = try VnodeTable.status(db, existing)
                try AccessCheck.requireStickyOwnership(existingStatus, in: toStatus, for: client.identity)
                if movedStatus.type == .directory {
                    guard existingStatus.type == .directory else { throw StatusCode.notDirectory }
                    guard try Int.fetchOne(db, cached: "SELECT COUNT(*) FROM dirEntry WHERE directory = ?", arguments: [existing]) == 0 else {
                        throw StatusCode.notEmpty
                    }
                } else if existingStatus.type == .directory {
                    throw StatusCode.isDirectory
                }
                changed.insert(existing)
                deletedData = try unlinkEntry(db, directory: to, name: toName, vnode: existing, status: existingStatus, now: now)
                if (try? VnodeTable.status(db, existing)) == nil { removed.append(existingStatus.fid) }
            }
            if movedStatus.type == .directory && from != to {
                // A directory may not move into its own subtree.
                var ancestor: Int64? = to
                while let current = ancestor {
                    if current == moved { throw StatusCode.invalidArgument }
                    ancestor = try Int64.fetchOne(db, cached: "SELECT parent FROM vnode WHERE id = ?", arguments: [current])
                }
                try db.execute(cached: "UPDATE vnode SET parent = ? WHERE id = ?", arguments: [to, moved])
                try db.execute(cached: "UPDATE vnode SET linkCount = linkCount - 1 WHERE id = ?", arguments: [from])
                try db.execute(cached: "UPDATE vnode SET linkCount = linkCount + 1 WHERE id = ?", arguments: [to])
            }
            try db.execute(cached: "DELETE FROM dirEntry WHERE directory = ? AND name = ?", arguments: [from, fromName])
            try db.execute(cached: "INSERT INTO dirEntry (directory, name, child) VALUES (?, ?, ?)", arguments: [to, toName, moved])
            try VnodeTable.touch(db, from, content: true, now: now)
            if to != from { try VnodeTable.touch(db, to, content: true, now: now) }
            try VnodeTable.touch(db, moved, content: false, now: now)
            return try finish(db, client: client, changed: Array(changed), granted: [from, to, moved], removed: removed,
                              reason: .rename, now: now,
                              NamespaceChange(directory: VnodeTable.status(db, from), target: VnodeTable.status(db, moved),
                                              otherDirectory: VnodeTable.status(db, to)))
        }
        if let deletedData { try? FileManager.default.removeItem(atPath: deletedData) }
        return mutation
    }

    /// Breaks other clients' promises on `changed` and grants the caller fresh ones on `granted`.
    /// The caller's own promises on `removed` (vnodes this change deleted) go too: nothing else
    /// would ever drop them, and a client that makes and removes files would grow the table.
    private func finish(_ db: Database, client: Requester, changed: [Int64], granted: [Int64], removed: [FID] = [],
                        reason: CallBackReason, now: Timespec, _ change: NamespaceChange) throws -> Mutation<NamespaceChange> {
        let breaks = try CallBackTable.breakAll(db, vnodes: changed, except: client.clientID, now: now.seconds, deleted: removed)
        try CallBackTable.forget(db, vnodes: removed.map { Int64($0.vnode) })
        let known = [change.directory, change.target, change.otherDirectory].compactMap { $0 }
        let expiry = try grant(db, client, vnodes: granted, now: now, known: known)
        return Mutation(value: change, breaks: breaks, reason: reason, callBackExpiry: expiry)
    }

    public func giveUpCallBacks(_ fids: [FID], client: String) throws {
        try writeTransaction { db in
            try CallBackTable.giveUp(db, client: client, vnodes: fids.map { Int64(clamping: $0.vnode) })
        }
    }

    /// A farewell: every promise of `client`, broken or not, and the record that it lost some
    /// (it gives them up knowingly).
    public func giveUpAllCallBacks(client: String) throws {
        try writeTransaction { db in
            try CallBackTable.dropAll(db, client: client)
            try db.execute(cached: "UPDATE client SET callBacksLost = 0 WHERE id = ?", arguments: [client])
        }
    }

    public func volumeStatus() throws -> VolumeStatus {
        var st = statvfs()
        guard statvfs(dataDirectory, &st) == 0 else { throw StatusCode.ioError }
        let files = try database.read { db in try Int.fetchOne(db, cached: "SELECT COUNT(*) FROM vnode") ?? 0 }
        var totalBlocks = UInt64(st.f_blocks)
        var freeBlocks = UInt64(st.f_bavail)
        if let quota = limits.quota, st.f_frsize > 0 {
            // As df on an AFS volume shows its quota: the quota is the size, and what it leaves is free.
            let blockSize = UInt64(st.f_frsize)
            totalBlocks = min(totalBlocks, quota / blockSize)
            let used = try volumeBytes()
            freeBlocks = min(freeBlocks, used >= quota ? 0 : (quota - used) / blockSize)
        }
        return VolumeStatus(blockSize: UInt32(st.f_frsize), totalBlocks: totalBlocks, freeBlocks: freeBlocks,
                            totalFiles: UInt64(files) + UInt64(st.f_favail), freeFiles: UInt64(st.f_favail))
    }

    /// `client` acknowledged the breaks of `fids`.
    public func settleBreaks(client: String, fids: [FID]) throws {
        try writeTransaction { db in try CallBackTable.settle(db, client: client, fids: fids) }
    }

    /// Whether `client` has a break it has not acknowledged (its Hello drops them all).
    public func hasUnsettledBreaks(client: String) throws -> Bool {
        try database.read { db in try CallBackTable.hasUnsettledBreaks(db, client: client) }
    }

    /// Breaks not yet acknowledged by clients other than `client`: a repeated request's reply
    /// waits for them, as the first reply did (the first execution may have been cut short by a
    /// crash of the server before they were acknowledged).
    public func unsettledBreaks(except client: String) throws -> [String: [FID]] {
        let now = Timespec.now().seconds
        return try database.read { db in try CallBackTable.unsettledBreaks(db, except: client, now: now) }
    }

    /// The promises one client holds, broken ones not yet acknowledged included.
    public func callBackCount(client: String) throws -> Int {
        try database.read { db in try Int.fetchOne(db, cached: "SELECT COUNT(*) FROM callBack WHERE client = ?", arguments: [client]) ?? 0 }
    }

    /// Live promises, for statistics and tests.
    public func callBackCount() throws -> Int {
        try database.read { db in try CallBackTable.count(db) }
    }

    /// Regular files in the volume.
    public func fileCount() throws -> Int {
        try database.read { db in try Int.fetchOne(db, cached: "SELECT COUNT(*) FROM vnode WHERE type = ?", arguments: [Int64(FileType.regular.rawValue)]) ?? 0 }
    }

    /// A write transaction, timed (`peach_server_transaction_duration_seconds`).
    func writeTransaction<T>(_ updates: (Database) throws -> T) throws -> T {
        try writerGate.run { try ServerMetrics.time(metrics.transactionDuration) { try database.write(updates) } }
    }

    /// Runs `body` (a short request) on this thread if no one is writing now; nil otherwise, and
    /// the caller hands it to the thread pool. For an event loop: it answers a request itself,
    /// and never waits behind a long writer.
    public func runIfWriterFree<T>(_ body: () -> T) -> T? {
        writerGate.tryRun(body)
    }
}
