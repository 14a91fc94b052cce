import Foundation
import GRDB
import PeachProtocol

/// The NFS-style procedures: stateless (no callbacks granted), at an offset, idempotent where
/// NFS's are. A WRITE still breaks the callbacks AFS-mode clients hold on the file.
extension VolumeStore {
    public func lookup(directory: FID, name: String, as identity: Identity? = nil) throws -> (directory: FileStatus, object: FileStatus) {
        try Self.validate(name: name)
        return try database.read { db in
            let (dir, dirStatus) = try VnodeTable.directory(db, directory)
            try AccessCheck.require(AccessCheck.search, on: dirStatus, for: identity)
            guard let child = try VnodeTable.lookup(db, directory: dir, name: name) else { throw StatusCode.notFound }
            return (dirStatus, try VnodeTable.status(db, child))
        }
    }

    /// READ: up to `count` bytes at `offset` of the current version.
    public func read(_ fid: FID, offset: UInt64, count: UInt32, as identity: Identity? = nil) throws -> (FileStatus, [UInt8]) {
        guard count <= UInt32(Frame.dataChunkSize) else { throw StatusCode.invalidArgument }
        for _ in 0..<8 {
            let (status, inline) = try database.read { db in
                let (vnode, status) = try VnodeTable.resolve(db, fid)
                let part = status.type == .regular ? try inlinePart(db, vnode: vnode, range: ByteRange(offset: offset, length: UInt64(count))) : nil
                return (status, part)
            }
            guard status.type == .regular else { throw status.type == .directory ? StatusCode.isDirectory : StatusCode.invalidArgument }
            try AccessCheck.requireData(AccessCheck.read, on: status, for: identity)
            guard offset < status.size else { return (status, []) }
            if let inline { return (status, inline) }
            let fd = open(dataPath(vnode: Int64(fid.vnode), version: status.dataVersion), O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else {
                if status.size == 0 || errno != ENOENT { return (status, []) }
                continue  // replaced by a newer version meanwhile: read that one
            }
            defer { close(fd) }
            let want = Int(min(UInt64(count), status.size - offset))
            var bytes = [UInt8](repeating: 0, count: want)
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, want, off_t(offset)) }
            guard n >= 0 else { throw StatusCode.ioError }
            bytes.removeLast(want - n)
            return (status, bytes)
        }
        throw StatusCode.ioError
    }

    /// WRITE: the data goes into the current version file in place, which becomes the next data
    /// version (NFS writes are not atomic, unlike StoreData). Unstable until `commit`.
    ///
    /// The bytes are written outside the database's writer (`writeInPlace`), so that other
    /// changes never wait for a WRITE's disk I/O; only the version's new name and the row's new
    /// version are made under it. A small file (within `inlineMaximum`), one with no version file
    /// yet, or any file while a backup runs, takes `writeUnderWriter`.
    public func write(_ fid: FID, offset: UInt64, data: [UInt8], client: Requester) throws -> Mutation<WriteResult> {
        let now = Timespec.now()
        let range = try WireValues.range(offset: offset, count: data.count, maximumFileSize: limits.maximumFileSize)
        // Once its bytes are in a version file, a WRITE is not checked again: they may already be
        // in a version another change committed (a truncate's copy, another WRITE's link).
        var written = false
        for _ in 0..<Self.writeInPlaceAttempts {
            switch try writeInPlace(fid, range: range, data: data, client: client, now: now, checked: written) {
            case .done(let mutation): return mutation
            case .versionMoved(let wrote): written = written || wrote
            case .underWriter: return try writeUnderWriter(fid, range: range, data: data, client: client, now: now, checked: written)
            }
        }
        return try writeUnderWriter(fid, range: range, data: data, client: client, now: now, checked: written)
    }

    /// Versions stored meanwhile (a StoreData, another WRITE) send a WRITE back to its start this
    /// many times at most; then it waits for the writer.
    static let writeInPlaceAttempts = 8

    /// Where a WRITE's bytes go (`WireValues.range`).
    typealias WriteRange = (offset: off_t, end: UInt64)

    private enum InPlace {
        case done(Mutation<WriteResult>)
        /// The version moved before the WRITE's transaction; `wrote`: its bytes are in a version file.
        case versionMoved(wrote: Bool)
        case underWriter
    }

    /// The checks (permission, quota, the disk's reserve) under a read transaction, the bytes into
    /// the version file with no lock held but `fileWorkGate`'s shared side, then, under the
    /// writer, a second name for the file as the next version and the row's new version, if the
    /// version written is still the file's. The old name goes once that commits, so at every
    /// instant the version the committed row names has its file (as in `writeUnderWriter`).
    ///
    /// Checked before the bytes are written, not again after (`checked` on a retry): like a
    /// descriptor open before a chmod, a WRITE that passed its checks completes. The quota may be
    /// passed by at most the WRITEs checked at the same moment (1 MiB each). As with any NFS
    /// server's unstable writes, bytes in place are seen by a reader of the version before they
    /// are committed, and a concurrent WRITE's bytes may ride in this one's version: a client
    /// that takes the version step as its own change alone (`ownChangeFrom`) may keep blocks
    /// that another writer's bytes changed, until its attribute timeout.
    private func writeInPlace(_ fid: FID, range: WriteRange, data: [UInt8], client: Requester, now: Timespec,
                              checked: Bool) throws -> InPlace {
        try fileWorkGate.shared {
            // A backup links version files: while one runs, a WRITE copies the version instead.
            guard !backupRunning.load(ordering: .acquiring) else { return .underWriter }
            let found = try database.read { db -> (vnode: Int64, status: FileStatus)? in
                let (vnode, status) = try fileToWrite(db, fid, range: range, client: client, checked: checked)
                guard max(status.size, range.end) > UInt64(inlineMaximum), try Self.inlineBytes(db, vnode: vnode) == nil else { return nil }
                return (vnode, status)
            }
            guard let (vnode, status) = found else { return .underWriter }
            // At most the bytes written are allocated (a hole before them takes no space).
            if !checked { try reserve.check(growth: UInt64(data.count)) }
            let path = dataPath(vnode: vnode, version: status.dataVersion)
            let fd = open(path, O_WRONLY | O_CLOEXEC)
            guard fd >= 0 else {
                guard errno == ENOENT else { throw StatusCode.ioError }
                // An empty file may have no version file; else a newer version replaced this one.
                return status.size == 0 ? .underWriter : .versionMoved(wrote: false)
            }
            defer { close(fd) }
            let written = data.withUnsafeBytes { pwrite(fd, $0.baseAddress, data.count, range.offset) }
            // A short write to a regular file means the disk filled.
            guard written == data.count else { throw written >= 0 ? StatusCode.noSpace : SparseCopy.statusCode(errno) }
            var removeAfterCommit: String?
            let mutation = try writeTransaction { db -> Mutation<WriteResult>? in
                let (_, current) = try VnodeTable.resolve(db, fid)
                guard current.dataVersion == status.dataVersion, try Self.inlineBytes(db, vnode: vnode) == nil else { return nil }
                try dropPrivilegeBitsOnWrite(db, vnode, current, by: client.identity)
                let newPath = dataPath(vnode: vnode, version: current.dataVersion + 1)
                unlink(newPath)  // a name left by a write whose transaction failed
                guard Glibc.link(path, newPath) == 0 else { throw StatusCode.ioError }
                groupSync.noteDirectoryChange()
                do {
                    let mutation = try recordWrite(db, vnode: vnode, status: current, size: max(current.size, range.end),
                                                   client: client, now: now)
                    removeAfterCommit = path
                    return mutation
                } catch {
                    unlink(newPath)
                    throw error
                }
            }
            if let removeAfterCommit { unlink(removeAfterCommit) }
            return mutation.map { .done($0) } ?? .versionMoved(wrote: true)
        }
    }

    /// WRITE with the file work under the database's writer: a small file's bytes rewritten
    /// inline in the transaction, or the next version made from the current one (a link, or a
    /// copy while a backup holds a link to it) and written.
    ///
    /// The next version's name is a second hard link to the same file, made before the
    /// transaction and the old name removed only after it commits: at every instant the version
    /// the committed row names has its file, so a crash anywhere (start-up removes the name no
    /// row names) leaves the file with the write or without it, never without the file.
    private func writeUnderWriter(_ fid: FID, range: WriteRange, data: [UInt8], client: Requester, now: Timespec,
                                  checked: Bool = false) throws -> Mutation<WriteResult> {
        var removeAfterCommit: String?
        let mutation = try writeTransaction { db -> Mutation<WriteResult> in
            let (vnode, status) = try fileToWrite(db, fid, range: range, client: client, checked: checked)
            // At most the bytes written are allocated (a hole before them takes no space).
            if !checked { try reserve.check(growth: UInt64(data.count)) }
            try dropPrivilegeBitsOnWrite(db, vnode, status, by: client.identity)
            let oldPath = dataPath(vnode: vnode, version: status.dataVersion)
            let size = max(status.size, range.end)
            if size <= UInt64(inlineMaximum) {
                var bytes = try smallContent(db, vnode: vnode, status: status, length: Int(size))
                bytes.replaceSubrange(Int(range.offset)..<Int(range.end), with: data)
                if !(try Self.dropInline(db, vnode: vnode)) && status.size > 0 { removeAfterCommit = oldPath }
                try Self.setInline(db, vnode: vnode, bytes)
                return try recordWrite(db, vnode: vnode, status: status, size: size, client: client, now: now)
            }
            let newPath = dataPath(vnode: vnode, version: status.dataVersion + 1)
            unlink(newPath)  // a name left by a write whose transaction failed
            if let inline = try Self.inlineBytes(db, vnode: vnode) {
                // A small file grows past the limit: its bytes start a version file.
                try SparseCopy.write(inline, to: newPath, size: Int64(status.size))
                try Self.dropInline(db, vnode: vnode)
            } else if backupRunning.load(ordering: .acquiring) && Self.isLinkedIntoBackup(oldPath) {
                // Only while a backup runs: it links version files under this same writer lock, so
                // a WRITE that saw no backup running finishes before any link is made.
                // A backup in progress holds this version by a hard link: write a copy, not its file.
                try SparseCopy.copy(from: oldPath, to: newPath, size: Int64(status.size))
            } else if Glibc.link(oldPath, newPath) != 0 {
                guard errno == ENOENT, FileManager.default.createFile(atPath: newPath, contents: nil) else { throw StatusCode.ioError }
            }
            groupSync.noteDirectoryChange()
            do {
                let fd = open(newPath, O_WRONLY | O_CLOEXEC)
                guard fd >= 0 else { throw StatusCode.ioError }
                defer { close(fd) }
                let written = data.withUnsafeBytes { pwrite(fd, $0.baseAddress, data.count, range.offset) }
                // A short write to a regular file means the disk filled.
                guard written == data.count else { throw written >= 0 ? StatusCode.noSpace : SparseCopy.statusCode(errno) }
                removeAfterCommit = oldPath
                return try recordWrite(db, vnode: vnode, status: status, size: size, client: client, now: now)
            } catch {
                unlink(newPath)
                throw error
            }
        }
        if let removeAfterCommit { unlink(removeAfterCommit) }
        return mutation
    }

    /// The file a WRITE goes to: a regular file that the caller may write, within the quota
    /// (not checked again when `checked`: a retry whose bytes are already in place).
    private func fileToWrite(_ db: Database, _ fid: FID, range: WriteRange, client: Requester,
                             checked: Bool) throws -> (vnode: Int64, status: FileStatus) {
        let (vnode, status) = try VnodeTable.resolve(db, fid)
        guard status.type == .regular else { throw status.type == .directory ? StatusCode.isDirectory : StatusCode.invalidArgument }
        if !checked {
            try AccessCheck.requireWritable(client.identity)
            try AccessCheck.requireData(AccessCheck.write, on: status, for: client.identity)
            try checkQuota(db, growth: Int64(range.end) - Int64(status.size))
        }
        return (vnode, status)
    }

    /// The new size and version of a WRITE, and the breaks it makes.
    private func recordWrite(_ db: Database, vnode: Int64, status: FileStatus, size: UInt64, client: Requester,
                             now: Timespec) throws -> Mutation<WriteResult> {
        try db.execute(cached: """
            UPDATE vnode SET size = ?, dataVersion = dataVersion + 1, mtimeSeconds = ?, mtimeNanoseconds = ?,
                ctimeSeconds = ?, ctimeNanoseconds = ? WHERE id = ?
            """, arguments: [Int64(size), now.seconds, now.nanoseconds, now.seconds, now.nanoseconds, vnode])
        let breaks = try CallBackTable.breakAll(db, vnodes: [vnode], except: client.clientID, now: now.seconds)
        return Mutation(value: WriteResult(before: status.dataVersion, after: try VnodeTable.status(db, vnode)),
                        breaks: breaks, reason: .store, callBackExpiry: 0)
    }

    /// Whether a version file has another name: only `backup` links version files.
    static func isLinkedIntoBackup(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && st.st_nlink > 1
    }

    public struct WriteResult: Sendable {
        public var before: UInt64
        public var after: FileStatus
    }

    /// COMMIT: makes what was written to the file durable (a small file's: the database's log).
    public func commit(_ fid: FID) throws -> FileStatus {
        let (status, inline) = try database.read { db in
            let (vnode, status) = try VnodeTable.resolve(db, fid)
            return (status, try Self.inlineBytes(db, vnode: vnode) != nil)
        }
        if inline || status.size == 0 {
            try makeDurable()
            return status
        }
        let fd = open(dataPath(vnode: Int64(fid.vnode), version: status.dataVersion), O_RDONLY | O_CLOEXEC)
        if fd >= 0 {
            defer { close(fd) }
            guard fsync(fd) == 0 else { throw StatusCode.ioError }
        }
        return status
    }

    /// READDIR: up to `count` entries from position `cookie` of the name-sorted listing.
    public func readDirectory(_ fid: FID, cookie: UInt32, count: UInt32, as identity: Identity? = nil) throws -> (FileStatus, [DirectoryEntry], Bool) {
        try database.read { db in
            let (dir, status) = try VnodeTable.directory(db, fid)
            try AccessCheck.require(AccessCheck.read, on: status, for: identity)
            let all = try VnodeTable.entries(db, directory: dir)
            let start = min(Int(cookie), all.count)
            let end = min(all.count, start + Int(max(1, count)))
            return (status, Array(all[start..<end]), end == all.count)
        }
    }

    public func readlink(_ fid: FID) throws -> (FileStatus, String) {
        try database.read { db in
            let (vnode, status) = try VnodeTable.resolve(db, fid)
            guard status.type == .symlink else { throw StatusCode.invalidArgument }
            return (status, try String.fetchOne(db, cached: "SELECT symlinkTarget FROM vnode WHERE id = ?", arguments: [vnode]) ?? "")
        }
    }
}
