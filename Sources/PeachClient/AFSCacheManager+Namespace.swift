import Foundation
import NIOConcurrencyHelpers
import NIOCore
import PeachProtocol

/// Directories cached whole under callbacks; namespace changes synchronous at the server, the
/// cached listing updated from the reply.
extension AFSCacheManager {
    /// The directory with a valid promise and its listing cached, fetching it whole if needed.
    func directoryWithListing(_ inode: Inode) throws -> (FID, [String: DirectoryEntry]) {
        let directory = try vnode(inode)
        let fid = directory.fid
        if let listing = table.withLock({ t in t.validListing(fid) }) { return (fid, listing) }
        return try directory.io.withLock {
            if let listing = table.withLock({ t in t.validListing(fid) }) { return (fid, listing) }
            guard directory.isDirectory else { throw FileSystemError.notDirectory }
            let listing = try fetchData(inMemory: fid) { status, expiry, bytes, stamp in
                let entries: [DirectoryEntry]
                do {
                    entries = try DirectoryListingCodec.decode(bytes)
                } catch {
                    throw FileSystemError(EIO, "malformed directory listing: \(error)")
                }
                let listing = Dictionary(entries.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
                table.withLock { t in
                    t.install(status, expiry: expiry, stamp: stamp)
                    t.update(fid) { directory in
                        directory.listing = listing
                        directory.listingVersion = status.dataVersion
                    }
                }
                return listing
            }
            return (fid, listing)
        }
    }

    public func lookup(parent: Inode, name: String) throws -> Entry {
        try FileSystemError.checkName(name)
        do {
            return try orOffline { try lookupOnce(parent: parent, name: name) }
        } catch let error as FileSystemError where error.errno == ESTALE {
            // The listing named an object removed meanwhile (a rename over the name raced the
            // fetch): fetch the listing again and look once more, as Linux's NFS client does.
            let directory = try vnode(parent).fid
            table.withLock { t in
                t.update(directory) { directory in
                    directory.listing = nil
                    directory.callBackExpiry = 0
                }
            }
            return try lookupOnce(parent: parent, name: name)
        }
    }

    private func lookupOnce(parent: Inode, name: String) throws -> Entry {
        try revalidateListing(parent, name: name)
        let (directory, listing) = try directoryWithListing(parent)
        guard let entry = listing[name] else { throw FileSystemError.notFound }
        if !table.withLock({ t in t[fid: entry.fid].map(t.hasValidCallBack) ?? false }) {
            try statusForLookup(entry, in: listing)
        }
        return try handToKernel(entry.fid, parent: parent, name: name, directory: directory)
    }

    /// A directory whose listing is held but whose promise lapsed (expiry, a reconnect, a break
    /// for a status change) is revalidated with one BulkStatus of it and of the object `name`
    /// names in it: unchanged, the listing stays (`install` drops it otherwise), and the object's
    /// status comes in the same request.
    func revalidateListing(_ inode: Inode, name: String) throws {
        let directory = try vnode(inode)
        guard let listing = directory.listing else { return }
        let fids = table.withLock { t -> [FID]? in
            guard !t.hasValidCallBack(directory) else { return nil }
            var fids = [directory.fid]
            if let child = listing[name], !(t[fid: child.fid].map(t.hasValidCallBack) ?? false) {
                fids.append(child.fid)
            }
            return fids
        }
        guard let fids else { return }
        try call(.bulkStatus(fids))
    }

    public func readDirectory(_ inode: Inode) throws -> [DirectoryListingEntry] {
        let (directory, listing) = try orOffline { try directoryWithListing(inode) }
        do {
            try prefetchStatuses(of: Array(listing.values))
        } catch {
            // Only a prefetch: each lookup asks for what is missing.
            core.logger.debug("statuses not prefetched", metadata: ["error": "\(error)"])
        }
        let parent = table.withLock { t in t[fid: directory]?.parent ?? inode }
        var result = [DirectoryListingEntry(name: ".", inode: inode, type: .directory),
                      DirectoryListingEntry(name: "..", inode: parent, type: .directory)]
        for name in listing.keys.sorted() {
            let entry = listing[name]!
            result.append(DirectoryListingEntry(name: name, inode: entry.fid.vnode, type: entry.type))
        }
        return result
    }

    /// A directory being listed is usually followed by a lookup of every name (`ls -l`): fetch
    /// the statuses the cache lacks with BulkStatus, many per request, as OpenAFS's bulkstat does.
    func prefetchStatuses(of entries: [DirectoryEntry]) throws {
        let missing = table.withLock { t in entries.map(\.fid).filter(t.lacksValidStatus) }
        try bulkStatus(missing)
    }

    /// The status of a looked-up object with no valid promise, fetched in one BulkStatus with
    /// those of up to 127 siblings that lack one, as OpenAFS's bulkstat does: a program that looks
    /// up one name of a directory usually goes on with the next (cp -r, tar, make).
    func statusForLookup(_ entry: DirectoryEntry, in listing: [String: DirectoryEntry]) throws {
        let siblings = table.withLock { t in
            var siblings: [FID] = []
            for sibling in listing.values where siblings.count < Self.bulkStatusBatch - 1 {
                if sibling.fid != entry.fid && t.lacksValidStatus(sibling.fid) { siblings.append(sibling.fid) }
            }
            return siblings
        }
        try bulkStatus([entry.fid] + siblings)
        if table.withLock({ t in t[fid: entry.fid] }) == nil {
            try fetchStatus(entry.fid)  // refused in the batch: ask alone, for its error
        }
    }

    /// BulkStatus of `fids`, in batches, each status installed with its promise.
    func bulkStatus(_ missing: [FID]) throws {
        for start in stride(from: 0, to: missing.count, by: Self.bulkStatusBatch) {
            let batch = Array(missing[start..<min(missing.count, start + Self.bulkStatusBatch)])
            try call(.bulkStatus(batch))
        }
    }

    static let bulkStatusBatch = Request.maximumBulkStatusCount

    public func readlink(_ inode: Inode) throws -> String {
        let link = try validated(inode)
        if let target = table.withLock({ t in t.hasValidCallBack(link) ? link.symlinkTarget : nil }) { return target }
        return try fetchData(inMemory: link.fid) { status, expiry, bytes, stamp in
            let target = String(buffer: bytes)
            table.withLock { t in
                t.install(status, expiry: expiry, stamp: stamp)
                t.update(link.fid) { $0.symlinkTarget = target }
            }
            return target
        }
    }

    // MARK: Changes

    /// A namespace change through the pipeline; `CachedVnodeTable.apply` edits the cached listings.
    private func change(_ request: Request) throws -> NamespaceChange {
        guard case .namespace(let change, _) = try call(request) else { throw FileSystemError.unexpectedReply }
        return change
    }

    /// The entry the kernel gets for `fid`, reached as `name` in `parent` (whose FID is `directory`).
    private func handToKernel(_ fid: FID, parent: Inode, name: String, directory: FID) throws -> Entry {
        try table.withLock { t in
            let vnode = try t.handedToKernel(fid, parent: parent, name: name)
            return Entry(attributes: Attributes(status: vnode.status, timeout: t.kernelTimeout(vnode)),
                         entryTimeout: t[fid: directory].map { t.kernelTimeout($0) } ?? 0)
        }
    }

    private func newEntry(_ change: NamespaceChange, parent: Inode, name: String) throws -> Entry {
        guard let target = change.target else { throw FileSystemError(EIO, "reply without the new object") }
        return try handToKernel(target.fid, parent: parent, name: name, directory: try vnode(parent).fid)
    }

    func createdEntry(_ request: Request, parent: Inode, name: String) throws -> Entry {
        try FileSystemError.checkName(name)
        return try newEntry(try change(request), parent: parent, name: name)
    }

    func fid(of inode: Inode) throws -> FID { try vnode(inode).fid }

    /// The new file is empty on the server and here: no fetch, and its reads are hits.
    func openCreated(_ entry: Entry, flags: Int32) throws -> OpenReply {
        let vnode = try vnode(entry.inode)
        let dataVersion = vnode.status.dataVersion
        let copy = try disk.create(disk.path(vnode.fid, dataVersion), flags: O_RDWR)
        do {
            try disk.install(.init(fid: vnode.fid, dataVersion: dataVersion, size: 0, dirty: false, lastUse: 0))
        } catch {
            disk.close(copy)
            throw error
        }
        do {
            try table.withLock { t in
                try t.updateKnown(vnode.fid) { vnode in
                    vnode.openCount += 1
                    vnode.kernelVersion = dataVersion
                }
            }
        } catch {
            disk.close(copy)
            throw error
        }
        let handle = core.handles.insert(OpenFile(fid: vnode.fid, io: vnode.io, copy: copy, servedFromCache: true))
        return OpenReply(handle: handle, keepCache: false, flags: flags)
    }

    public func makeDirectory(parent: Inode, name: String, mode: UInt32, context: RequestContext) throws -> Entry {
        let request = try createRequest(parent: parent, name: name, type: .directory, mode: mode, context: context)
        let entry = try createdEntry(.makeDir(request), parent: parent, name: name)
        // An empty directory: its listing is known without a fetch.
        let fid = try vnode(entry.inode).fid
        table.withLock { t in
            t.update(fid) { vnode in
                guard vnode.listing == nil else { return }
                vnode.listing = [:]
                vnode.listingVersion = vnode.status.dataVersion
            }
        }
        return entry
    }

    public func symlink(parent: Inode, name: String, target: String, context: RequestContext) throws -> Entry {
        let request = try createRequest(parent: parent, name: name, type: .symlink, mode: 0o777, target: target, context: context)
        let entry = try createdEntry(.symlink(request), parent: parent, name: name)
        let fid = try vnode(entry.inode).fid
        table.withLock { t in t.update(fid) { $0.symlinkTarget = target } }
        return entry
    }

    public func unlink(parent: Inode, name: String) throws {
        try remove(.removeFile(directory: try vnode(parent).fid, name: name), parent: parent, name: name)
    }

    public func removeDirectory(parent: Inode, name: String) throws {
        try remove(.removeDir(directory: try vnode(parent).fid, name: name), parent: parent, name: name)
    }

    private func remove(_ request: Request, parent: Inode, name: String) throws {
        try FileSystemError.checkName(name)
        let change = try change(request)
        guard let target = change.target, target.linkCount == 0 else { return }
        let fid = target.fid
        // The last name is gone: so is the object. An open descriptor keeps its cached copy.
        let dropNow = table.withLock { t -> Bool in
            t.update(fid) { vnode in
                vnode.removed = true
                vnode.status.linkCount = 0
                vnode.callBackExpiry = 0
                return vnode.openCount == 0
            } ?? true
        }
        if dropNow { disk.remove(fid) }
    }

    public func rename(parent: Inode, name: String, newParent: Inode, newName: String, noReplace: Bool) throws {
        try FileSystemError.checkName(name)
        try FileSystemError.checkName(newName)
        if noReplace {
            // RENAME_NOREPLACE, checked against a fresh listing of the destination.
            let (_, listing) = try directoryWithListing(newParent)
            if listing[newName] != nil { throw FileSystemError.exists }
        }
        let request = Request.rename(fromDirectory: try vnode(parent).fid, fromName: name,
                                     toDirectory: try vnode(newParent).fid, toName: newName)
        let moved = table.withLock { t in t.vnodes[parent]?.listing?[name] }
        let replaced = table.withLock { t in t.vnodes[newParent]?.listing?[newName] }
        _ = try change(request)
        table.withLock { t in
            if let moved {
                t.update(moved.fid) { vnode in
                    vnode.parent = newParent
                    vnode.name = newName
                }
            }
            // The replaced object lost a name and may be gone: ask the server before trusting it again.
            if let replaced, replaced.fid != moved?.fid { t.update(replaced.fid) { $0.callBackExpiry = 0 } }
        }
    }

    public func setAttributes(_ inode: Inode, _ changes: SetAttributes, handle: UInt64?) throws -> Attributes {
        let vnode = try vnode(inode)
        let fid = vnode.fid
        var remote = changes
        if let size = changes.size, vnode.openCount > 0, vnode.status.type == .regular {
            // An open file is truncated in its cached copy and stored whole on close; the index
            // says the copy is dirty before it changes.
            try vnode.io.withLock {
                guard let entry = disk.entry(fid) else { throw FileSystemError(EIO, "no cached copy") }
                let generation = try markDirty(fid, size: entry.size)
                guard Glibc.truncate(disk.path(fid, entry.dataVersion), off_t(size)) == 0 else {
                    // Nothing changed (EFBIG: past the local file system's largest file).
                    let error = FileSystemError(errno, "truncating the cached copy")
                    if !entry.dirty { disk.undoDirtyMark(fid, generation: generation) }
                    throw error
                }
                try markDirty(fid, size: size)
            }
            remote.size = nil
        }
        if table.withLock({ t in t[fid: fid]?.removed ?? false }) {
            // Unlinked while open: the server has nothing to change.
            table.withLock { t in t.update(fid) { $0.status.applyLocally(remote) } }
            return try attributes(fid)
        }
        if table.withLock({ t in t.isDirty(fid) }), let mtime = changes.mtime {
            // The coming store carries the local mtime: set it here too.
            table.withLock { t in
                t.update(fid) { vnode in
                    switch mtime {
                    case .now: vnode.status.mtime = Timespec.now()
                    case .at(let time): vnode.status.mtime = time
                    }
                }
            }
            remote.mtime = nil
        }
        if remote.isEmpty { return try attributes(fid) }
        if let pending = rideAlong(remote, on: fid) {
            // Open and dirty: the change goes with the coming store, as AFS-3's StoreData carries
            // a status (`cp -a`'s fchown, fchmod and futimens cost no request of their own).
            let now = Timespec.now()
            table.withLock { t in
                t.update(fid) { vnode in
                    if vnode.ownerOnServer == nil, pending.uid != nil || pending.gid != nil {
                        vnode.ownerOnServer = Credential(uid: vnode.status.uid, gid: vnode.status.gid)
                    }
                    vnode.pendingStatus = vnode.pendingStatus.merged(with: pending)
                    if let mode = pending.mode { vnode.status.mode = mode & 0o7777 }
                    if let uid = pending.uid { vnode.status.uid = uid }
                    if let gid = pending.gid { vnode.status.gid = gid }
                    if let atime = pending.atime { vnode.status.atime = atime }
                    vnode.status.ctime = now
                }
            }
            return try attributes(fid)
        }
        try call(.storeStatus(fid, remote))
        return try attributes(fid)
    }
}

extension AFSCacheManager {
    /// `changes` as a status change for the next store, if they may wait for it: the file is open
    /// and dirty here, no size change, and the caller may make them (root, or the owner changing
    /// mode and times), so that a refusal at the store cannot surprise anyone.
    func rideAlong(_ changes: SetAttributes, on fid: FID) -> StoreStatusChange? {
        guard changes.size == nil, changes.mtime == nil else { return nil }
        let (eligible, owner) = table.withLock { t in
            t[fid: fid].map { vnode in
                (vnode.openCount > 0 && t.isDirty(fid) && !vnode.removed && vnode.status.type == .regular, vnode.status.uid)
            } ?? (false, 0)
        }
        guard eligible else { return nil }
        let caller = Caller.credential.uid
        guard caller == 0 || (caller == owner && changes.uid == nil && changes.gid == nil) else { return nil }
        var atime: Timespec?
        switch changes.atime {
        case nil: break
        case .now: atime = Timespec.now()
        case .at(let t): atime = t
        }
        return StoreStatusChange(mode: changes.mode, uid: changes.uid, gid: changes.gid, atime: atime)
    }
}
