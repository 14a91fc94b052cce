import Foundation
import NIOConcurrencyHelpers
import NIOCore
import PeachProtocol

/// Whole-file caching: fetch on open, local reads and writes, store on close and fsync.
extension AFSCacheManager {
    public func open(_ inode: Inode, flags: Int32) throws -> OpenReply {
        statistics.update { $0.opens += 1 }
        if servingOffline, flags & O_ACCMODE != O_RDONLY || flags & O_TRUNC != 0 {
            throw FileSystemError(EROFS, "the file server is away: cached files are read-only (--offline-reads)")
        }
        let reply = try orOffline { try openOnce(inode, flags: flags) }
        if servingOffline { statistics.update { $0.offlineOpens += 1 } }
        return reply
    }

    private func openOnce(_ inode: Inode, flags: Int32) throws -> OpenReply {
        let vnode = try vnode(inode)
        let fid = vnode.fid
        if table.withLock({ t in t.isDirty(fid) && t[fid: fid].map { $0.openCount == 0 && !t.hasValidCallBack($0) } ?? false }) {
            // A copy left dirty by a failed store: stored now if the server still has the version
            // it was based on, else kept aside as a conflict and the server's version fetched.
            do { try store(fid, fd: nil) } catch {
                core.logger.debug("a leftover dirty copy could not be stored yet", metadata: ["fid": "\(fid)", "error": "\(error)"])
            }
        }
        let truncate = flags & O_TRUNC != 0
        if let readThrough = try openReadThrough(fid, flags: flags) { return readThrough }
        var askedServer = false
        var fetched = false
        let (copy, keepCache): (SpareCacheFiles.Descriptor, Bool) = try vnode.io.withLock {
            if !table.withLock({ t in t[fid: fid].map(t.hasValidCallBack) ?? false }) {
                if !truncate, disk.entry(fid) == nil, vnode.status.type == .regular {
                    // Nothing cached to revalidate: FetchData brings the status with the content.
                    try fetchWholeFile(fid)
                    fetched = true
                } else {
                    try fetchStatus(fid)
                }
                askedServer = true
            }
            let status = try self.vnode(fid).status
            guard status.type == .regular else { throw status.type == .directory ? FileSystemError.isDirectory : FileSystemError.invalid }
            let cached = disk.entry(fid)
            // A dirty copy is newer than anything on the server: keep it (the last close wins).
            let haveCurrentCopy = cached.map { $0.dirty || $0.dataVersion == status.dataVersion } ?? false
            if truncate {
                try truncateLocalCopy(fid, cached: haveCurrentCopy ? cached : nil, dataVersion: status.dataVersion)
            } else if !haveCurrentCopy && !fetched {
                try fetchWholeFile(fid)
                askedServer = true
                fetched = true
            }
            guard let entry = disk.entry(fid) else { throw FileSystemError(EIO, "cached copy vanished") }
            let copy = try disk.open(fid, entry.dataVersion, flags: O_RDWR)
            disk.touch(fid)
            let keep: Bool
            do {
                keep = try table.withLock { t in
                    try t.updateKnown(fid) { vnode in
                        vnode.openCount += 1
                        let keep = !truncate && vnode.kernelVersion == entry.dataVersion
                        vnode.kernelVersion = entry.dataVersion
                        return keep
                    }
                }
            } catch {
                disk.close(copy)
                throw error
            }
            if !keep {
                // The kernel may still hold the old size, which would cut reads of the new
                // version short: drop its attributes now (attribute-only invalidation takes no
                // lock this open holds; the pages go with keep_cache off).
                notifier?.invalidateAttributes(inode)
            }
            return (copy, keep)
        }
        if !askedServer { statistics.update { $0.openHits += 1 } }
        let handle = core.handles.insert(OpenFile(fid: fid, io: vnode.io, copy: copy, servedFromCache: !fetched))
        return OpenReply(handle: handle, keepCache: keepCache, flags: flags)
    }

    /// A read-only open of a file larger than the whole cache, with no copy held: it is read
    /// through, each read a ranged FetchData, rather than failing with ENOSPC. nil for any other.
    private func openReadThrough(_ fid: FID, flags: Int32) throws -> OpenReply? {
        var vnode = try self.vnode(fid)
        guard flags & O_ACCMODE == O_RDONLY, flags & O_TRUNC == 0, disk.entry(fid) == nil,
              vnode.status.type == .regular, vnode.status.size > disk.sizeLimit else { return nil }
        // The size known from the lookup says it may not fit: confirmed by a fresh status (a
        // file that fits costs no request here; its FetchData brings the status).
        if !table.withLock({ t in t.hasValidCallBack(vnode) }) { vnode = try fetchStatus(fid) }
        guard vnode.status.type == .regular, vnode.status.size > disk.sizeLimit else { return nil }
        core.logger.notice("reading a file larger than the cache through, without caching it",
                           metadata: ["fid": "\(fid)", "size": "\(vnode.status.size)", "cacheLimit": "\(disk.sizeLimit)"])
        try table.withLock { t in
            try t.updateKnown(fid) { vnode in
                vnode.openCount += 1
                vnode.kernelVersion = nil
            }
        }
        statistics.update { $0.readThroughOpens += 1 }
        notifier?.invalidateAttributes(fid.vnode)
        let handle = core.handles.insert(OpenFile(fid: fid, io: vnode.io, copy: nil, servedFromCache: false))
        return OpenReply(handle: handle, keepCache: false, flags: flags)
    }

    /// One read of a file read through: the range from the server, now.
    private func readThrough(_ file: OpenFile, offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = try fetchRange(file.fid, offset: offset, length: UInt64(buffer.count)) { status, expiry, bytes, stamp in
            table.withLock { t in _ = t.install(status, expiry: expiry, stamp: stamp) }
            let n = min(bytes.count, buffer.count)
            if n > 0 { bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: n) } }
            return n
        }
        statistics.update {
            $0.reads += 1
            $0.readBytes += UInt64(n)
        }
        return n
    }

    /// O_TRUNC: no fetch; the local copy becomes empty and dirty (marked first: the index must
    /// say so before the copy changes). Caller holds `vnode.io`.
    private func truncateLocalCopy(_ fid: FID, cached: DiskCache.Entry?, dataVersion: UInt64) throws {
        if let cached {
            try markDirty(fid, size: 0)
            guard Glibc.truncate(disk.path(fid, cached.dataVersion), 0) == 0 else {
                throw FileSystemError(errno, "truncating the cached copy")
            }
        } else {
            // A new empty copy, installed dirty (so no eviction can take it before the open
            // count rises), then recorded here as changed.
            disk.close(try disk.create(disk.path(fid, dataVersion), flags: O_WRONLY))
            try disk.install(.init(fid: fid, dataVersion: dataVersion, size: 0, dirty: true, lastUse: 0))
            try markDirty(fid, size: 0)
        }
    }

    /// FetchData into a new cache file, then install it. Caller holds `vnode.io`.
    func fetchWholeFile(_ fid: FID) throws {
        makeRoom(for: try vnode(fid).status.size)
        let temporary = disk.directory + "/files/fetch-" + UUID().uuidString
        let file = try disk.create(temporary, flags: O_WRONLY)
        defer { disk.close(file) }
        do {
            try fetchData(fid, into: file.fd) { status, expiry, stamp in
                Glibc.rename(temporary, disk.path(fid, status.dataVersion))
                try disk.install(.init(fid: fid, dataVersion: status.dataVersion, size: status.size, dirty: false, lastUse: 0))
                table.withLock { t in _ = t.install(status, expiry: expiry, stamp: stamp) }
            }
        } catch {
            Glibc.unlink(temporary)
            throw error
        }
        statistics.update { $0.cacheBytes = disk.totalBytes }
    }

    /// Evicts clean, closed files until `bytes` more fit under the cache size.
    func makeRoom(for bytes: UInt64) {
        let evicted = disk.evict(reserving: bytes) { fid in
            table.withLock { t in t[fid: fid].map { $0.openCount > 0 } ?? false }
        }
        if evicted > 0 {
            statistics.update { $0.evictions += evicted }
            core.logger.info("cache evicted", metadata: ["files": "\(evicted)", "cacheBytes": "\(disk.totalBytes)"])
        }
    }

    /// Records a local change of the cached copy. The first change of a clean copy must be
    /// recorded before it reaches the file (see `DiskCache`).
    /// `writtenBy`: the writer, who takes the set-id bits away unless root (the server does the
    /// same when the store arrives; here fstat shows it at once). Throws if the cache index could
    /// not record the mark: the change must then not reach the file.
    @discardableResult
    func markDirty(_ fid: FID, size: UInt64, writtenBy writer: UInt32? = nil) throws -> UInt64 {
        let now = Timespec.now()
        let path = table.withLock { t -> String? in
            let path = t.isDirty(fid) ? nil : t[fid: fid].flatMap { t.path(of: $0) }
            t.update(fid) { vnode in
                if let writer { vnode.status.losePrivilegeBits(onWriteBy: writer) }
                vnode.status.size = size
                vnode.status.mtime = now
                vnode.status.ctime = now
            }
            return path
        }
        return try disk.markDirty(fid, size: size, path: path)
    }

    public func read(handle: UInt64, offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let file = try core.handles.get(handle)
        if file.readThrough { return try readThrough(file, offset: offset, into: buffer) }
        let n = pread(file.fd, buffer.baseAddress, buffer.count, off_t(offset))
        guard n >= 0 else { throw FileSystemError(errno, "reading the cached copy") }
        statistics.update {
            $0.reads += 1
            $0.readBytes += UInt64(n)
            if file.servedFromCache { $0.readHitBytes += UInt64(n) }
        }
        return n
    }

    public func write(handle: UInt64, offset: UInt64, from buffer: UnsafeRawBufferPointer) throws -> Int {
        let file = try core.handles.get(handle)
        if let size = table.withLock({ t in t.isDirty(file.fid) ? nil : t[fid: file.fid]?.status.size }) {
            try markDirty(file.fid, size: size)  // in the index before the data
        }
        let n = pwrite(file.fd, buffer.baseAddress, buffer.count, off_t(offset))
        guard n >= 0 else { throw FileSystemError(errno, "writing the cached copy") }
        // The size is the file's, read after the write: another process's O_TRUNC open or
        // truncate may have come between (a size computed from the one before would then claim
        // bytes the copy does not have, and every store of it would fail).
        try markDirty(file.fid, size: try Self.fileSize(file.fd), writtenBy: Caller.userID)
        statistics.update {
            $0.writes += 1
            $0.writeBytes += UInt64(n)
        }
        return n
    }

    public func flush(handle: UInt64) throws {
        try flush(handle: handle, storeBehindAllowed: true)
    }

    /// A close's flush may leave the store to `storeBehind`; an fsync's never does.
    private func flush(handle: UInt64, storeBehindAllowed: Bool) throws {
        let file = try core.handles.get(handle)
        let fid = file.fid
        guard table.withLock({ t in t.isDirty(fid) && t[fid: fid]?.removed == false }) else { return }
        // The store behind acts for the closing process, as the store at close would.
        if storeBehindAllowed, storeBehind.isEnabled {
            let closer = Caller.credential
            if storeBehind.enqueue(fid.vnode, store: { [weak self] in
                Caller.serving({ closer }) { self?.storeBehindClose(fid) }
            }) { return }
        }
        do {
            try store(fid, fd: file.fd)
        } catch {
            // close(2) gets the error too; the copy stays dirty in the cache.
            core.logger.warning("store failed", metadata: ["fid": "\(fid)", "error": "\(error)"])
            throw error
        }
    }

    public func fsync(handle: UInt64) throws {
        try flush(handle: handle, storeBehindAllowed: false)
    }

    /// The store a close left behind. A copy no descriptor holds open any more is stored only
    /// if the server still has the version it was based on (else it is kept as a conflict), as
    /// any leftover copy is; a failure leaves it dirty for the next close, `fs sync` or unmount.
    private func storeBehindClose(_ fid: FID) {
        do {
            if try store(fid, fd: nil) { statistics.update { $0.storesBehind += 1 } }
        } catch {
            core.logger.warning("store behind a close failed; the copy stays dirty in the cache",
                                metadata: ["fid": "\(fid)", "error": "\(error)"])
        }
    }

    public func release(handle: UInt64) {
        guard let file = core.handles.remove(handle) else { return }
        if let copy = file.copy { disk.close(copy) }
        if table.withLock({ t in t.closed(file.fid) }) { disk.remove(file.fid) }
    }

    /// StoreData of the whole local copy. On failure the copy stays dirty and the error goes to
    /// the caller (close(2), fsync(2)).
    ///
    /// A store from an open descriptor (close, fsync) wins over any other version, as AFS's last
    /// close does. A copy no descriptor holds open (left dirty by a failed store or a crash,
    /// stored at unmount, at the next start or by `peach fs flush`), and a copy an earlier run
    /// left dirty (`leftovers`) whoever stores it, is stored only if the server still has the
    /// version it was based on; otherwise it is kept aside as a conflict.
    /// Returns whether a store was made (nothing is left to store once another one, `fs sync` or
    /// a close, stored the copy first).
    @discardableResult
    func store(_ fid: FID, fd givenFD: Int32?) throws -> Bool {
        guard let io = table.withLock({ t in t[fid: fid]?.io }) else { return false }
        return try io.withLock {
            guard let (vnode, leftover) = table.withLock({ t in t[fid: fid].map { ($0, $0.openCount == 0 || t.leftovers.contains(fid)) } }) else { return false }
            let (mtime, pending) = (vnode.status.mtime, vnode.pendingStatus)
            // The entry's generation counts local changes: one made after this stays dirty.
            guard !vnode.removed, let entry = disk.entry(fid), entry.dirty else { return false }
            let opened = givenFD == nil ? try disk.open(fid, entry.dataVersion, flags: O_RDONLY) : nil
            defer { if let opened { disk.close(opened) } }
            let fd = givenFD ?? opened!.fd
            // What is sent is the copy as it is now; a write after this makes it dirty again.
            let size = try Self.fileSize(fd)
            // A store at close is the closing process's; one at unmount or recovery, the owner's.
            let owner = vnode.ownerOnServer ?? Credential(uid: vnode.status.uid, gid: vnode.status.gid)
            let status: FileStatus
            do {
                status = try Caller.unlessNamed(owner) {
                    try storeData(fid, fd: fd, size: size, mtime: mtime, status: pending,
                                  baseVersion: leftover ? entry.dataVersion : nil) { status, expiry, stamp in
                        table.withLock { t in
                            t.update(fid) { vnode in
                                // What was sent is applied; changes made during the store wait for the next one.
                                if vnode.pendingStatus == pending {
                                    vnode.pendingStatus = StoreStatusChange()
                                    vnode.ownerOnServer = nil
                                }
                                // The kernel's pages hold what we just stored.
                                if vnode.kernelVersion != nil { vnode.kernelVersion = status.dataVersion }
                            }
                            t.install(status, expiry: expiry, stamp: stamp)
                            t.leftovers.remove(fid)
                        }
                        return status
                    }
                }
            } catch let error as FileSystemError where leftover && (error.serverCode == .versionConflict || error.serverCode == .stale) {
                try keepAsConflict(fid, because: error.serverCode == .stale ? "the file was removed" : "the file changed")
                return false
            }
            try disk.markStored(fid, newVersion: status.dataVersion, size: size, storedGeneration: entry.generation)
            table.withLock { t in t.stored(fid) }
            // The server set a new ctime: the kernel's cached attributes are stale.
            core.tellKernelLater { $0.invalidateAttributes(fid.vnode) }
            statistics.update { $0.cacheBytes = disk.totalBytes }
            return true
        }
    }

    /// The size of the cached copy open as `fd`: the truth about a dirty copy.
    static func fileSize(_ fd: Int32) throws -> UInt64 {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FileSystemError(errno, "reading the cached copy's size") }
        return UInt64(st.st_size)
    }

    /// A leftover dirty copy the server refused: its bytes go to the conflicts folder, and the
    /// vnode (if any) is clean and unpromised, so the next open fetches the server's version.
    /// Caller holds the vnode's `io`, if there is a vnode.
    func keepAsConflict(_ fid: FID, because reason: String) throws {
        guard let conflict = try disk.setAside(fid) else { return }
        statistics.update {
            $0.conflicts = disk.conflicts.list().count
            $0.cacheBytes = disk.totalBytes
        }
        core.logger.warning("a dirty copy was not stored: \(reason) on the server since the copy was taken; it is kept as a conflict (peach fs conflicts)",
                       metadata: ["fid": "\(fid)", "path": "\(conflict.path ?? "unknown")", "kept": "\(conflict.file)"])
        let known = table.withLock { t in
            t.leftovers.remove(fid)
            let known = t[fid: fid] != nil
            t.update(fid) { vnode in
                vnode.pendingStatus = StoreStatusChange()
                vnode.ownerOnServer = nil
                vnode.callBackExpiry = 0
                vnode.kernelVersion = nil
            }
            return known
        }
        if known { core.tellKernelLater { $0.invalidateInode(fid.vnode) } }
    }
}
