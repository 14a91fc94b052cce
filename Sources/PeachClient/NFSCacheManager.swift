import Foundation
import Logging
import PeachProtocol
import PeachSecurity
import PeachSupport
import Synchronization

/// The NFS-style client: a block cache in memory, an attribute cache with the Linux client's
/// timeouts, GETATTR on every open (close-to-open), READ of missing blocks and WRITE of dirty
/// blocks on close and fsync, against the server's stateless procedures. No callbacks: what it
/// caches may be stale until its timeouts run out, as with the real NFS client.
public final class NFSCacheManager: CacheDesign, Sendable {
    let core: ClientCore<NFSOpenFile>
    public let options: NFSOptions

    /// Every node and the block cache, behind one lock.
    let table: Mutex<NFSNodeTable>

    /// - Parameter retry: what a request does when the server is away (a mount: hard or soft).
    public init(server: ServerAddress, options: NFSOptions, tls: ClientTLS? = nil, retry: ServerConnection.RetryPolicy = .failFast,
                logger: Logger = .noticesOnly("peach.nfs")) {
        self.options = options
        // No state on the server: a fresh identity each mount, only to introduce the connection.
        core = ClientCore(design: .nfs, server: server, clientID: "nfs-" + UUID().uuidString, epoch: 1, tls: tls, retry: retry,
                          logger: logger)
        table = Mutex(NFSNodeTable(core: core, options: options))
        core.statistics.metrics.limitBytes.record(Int64(clamping: options.cacheSize))
        core.setHandlers(hello: { _, _ in }, push: { _, ack in ack() })
    }

    public func start() throws {
        try core.start {
            let root = try getAttr(FID.root)
            table.withLock { t in t.update(root.fid) { $0.parent = $0.inode } }
        }
    }

    /// Dirty blocks that cannot be written within the grace are lost, as with an NFS soft mount.
    public func shutdown() {
        core.shutdown(storing: table.withLock { t in t.allNodes.filter { $0.isDirty && !$0.removed }.map(\.fid) },
                      store: { try writeBack($0, commit: true) }, unsaved: "its unwritten blocks are lost")
    }

    /// No promises to guard: a status is checked by its data version, not by a stamp.
    func stampBeforeSending() {}

    // MARK: Attribute cache

    /// The node the kernel reaches as `inode`, as it is now.
    func node(_ inode: Inode) throws -> NFSNode {
        guard let node = table.withLock({ t in t.nodes[inode] }) else { throw FileSystemError.stale }
        return node
    }

    /// The node of `fid`, as it is now.
    func node(_ fid: FID) throws -> NFSNode {
        try table.withLock { t in try t.node(fid) }
    }

    /// GETATTR, always.
    @discardableResult
    func getAttr(_ fid: FID) throws -> NFSNode {
        do {
            return try perform(.fetchStatus(fid)) { reply, _ in
                guard case .status(let status, _) = reply else { throw FileSystemError.unexpectedReply }
                return table.withLock { t in t.apply(status) }
            }
        } catch let error as FileSystemError where error.errno == ESTALE {
            forgetName(of: fid)
            throw error
        }
    }

    /// `fid` is gone from the server (replaced by a rename, or removed, by another client): the
    /// name that led to it is forgotten here and in the kernel, so that the kernel's retry of
    /// the call (with a fresh lookup, as after any ESTALE) asks the server for what the name is now.
    func forgetName(of fid: FID) {
        let entry = table.withLock { t -> (Inode, String)? in
            guard let (parent, name) = t.update(fid, { node in
                node.fetchedAt = 0
                return node.parent.flatMap { parent in node.name.map { (parent, $0) } }
            }) ?? nil, let directory = t.nodes[parent]?.fid,
                  t.nodes[parent]?.names[name] == .some(fid.vnode) else { return nil }
            t.update(directory) { $0.names[name] = nil }
            return (parent, name)
        }
        guard let (parent, name) = entry else { return }
        core.tellKernelLater { $0.invalidateEntry(parent: parent, name: name) }
    }

    /// The node of `fid` with attributes no older than their timeout, asking the server if they
    /// are. Returns whether the server was asked.
    @discardableResult
    func revalidate(_ fid: FID, force: Bool = false) throws -> Bool {
        // Unlinked while open: what is known here is all there is.
        if try table.withLock({ t in try t.node(fid).removed || (!force && t.isFresh(try t.node(fid))) }) { return false }
        try getAttr(fid)
        return true
    }

    /// What the kernel may cache of the node of `fid` as it is now.
    func attributes(_ fid: FID) throws -> Attributes {
        try table.withLock { t in
            let node = try t.node(fid)
            return Attributes(status: node.status, timeout: t.remainingTimeout(node))
        }
    }

    public func getAttributes(_ inode: Inode, handle: UInt64?) throws -> Attributes {
        let fid = try node(inode).fid
        try revalidate(fid)
        return try attributes(fid)
    }

    /// The kernel dropped `count` references: a node it no longer knows, with nothing open or
    /// dirty, goes with its cached blocks, so memory is bounded by the kernel's inodes.
    public func forget(_ inode: Inode, count: UInt64) {
        table.withLock { t in t.kernelForgot(inode, count: count) }
    }

    public func callBacks() -> [CallBackInfo] { [] }

    /// Dirty blocks live in memory only, as with NFS: nothing outlives the process to conflict.
    public func conflicts() -> [Conflict] { [] }

    public func flushCachedCopy(_ inode: Inode) throws {
        let fid = try node(inode).fid
        if try node(fid).isDirty { try writeBack(fid, commit: true) }
        table.withLock { t in
            t.dropCachedData(fid)
            t.update(fid) { $0.fetchedAt = 0 }
        }
    }

    // MARK: Names

    public func lookup(parent: Inode, name: String) throws -> Entry {
        try FileSystemError.checkName(name)
        let directory = try node(parent).fid
        try revalidate(directory)
        // A name looked up before is trusted while the directory is unchanged (a dentry).
        if let cached = table.withLock({ t in t[fid: directory]?.names[name] }) {
            guard let inode = cached else { throw FileSystemError.notFound }
            if let child = table.withLock({ t in t.nodes[inode]?.fid }) {
                do {
                    try revalidate(child)
                    return try entry(child, in: directory, parent: parent, name: name)
                } catch let error as FileSystemError where error.errno == ESTALE {
                    // Removed behind our back: forget the name and ask the server (as the
                    // kernel's ESTALE retry with LOOKUP_REVAL does).
                    table.withLock { t in t.update(directory) { _ = $0.names.removeValue(forKey: name) } }
                }
            }
        }
        let child: FID
        do {
            child = try perform(.lookup(directory: directory, name: name)) { reply, _ in
                guard case .lookup(let dirStatus, let object) = reply else { throw FileSystemError.unexpectedReply }
                return table.withLock { t -> FID in
                    t.apply(dirStatus)
                    let child = t.apply(object)
                    t.update(directory) { $0.names[name] = child.inode }
                    return child.fid
                }
            }
        } catch let error as FileSystemError where error.errno == ENOENT {
            table.withLock { t in t.update(directory) { $0.names[name] = .some(nil) } }
            throw error
        }
        return try entry(child, in: directory, parent: parent, name: name)
    }

    /// The entry the kernel gets for `child`, reached as `name` in `parent` (whose FID is `directory`).
    func entry(_ child: FID, in directory: FID, parent: Inode, name: String) throws -> Entry {
        try table.withLock { t in
            let child = try t.handedToKernel(child, parent: parent, name: name)
            return Entry(attributes: Attributes(status: child.status, timeout: t.remainingTimeout(child)),
                         entryTimeout: t[fid: directory].map { t.remainingTimeout($0) } ?? 0)
        }
    }

    public func readDirectory(_ inode: Inode) throws -> [DirectoryListingEntry] {
        let directory = try node(inode).fid
        try revalidate(directory)
        var listing = table.withLock { t in t[fid: directory]?.listing }
        if listing == nil {
            var entries: [DirectoryEntry] = []
            while true {
                let request = Request.readDir(directory, cookie: UInt32(entries.count), count: 512)
                let last = try perform(request) { reply, _ in
                    guard case .readDir(let status, let page, let end) = reply else { throw FileSystemError.unexpectedReply }
                    entries += page
                    let last = end || page.isEmpty
                    table.withLock { t in
                        t.apply(status)
                        if last { t.update(directory) { $0.listing = entries } }
                    }
                    return last
                }
                if last { break }
            }
            listing = entries
        }
        let parent = table.withLock { t in t[fid: directory]?.parent ?? inode }
        return [DirectoryListingEntry(name: ".", inode: inode, type: .directory),
                DirectoryListingEntry(name: "..", inode: parent, type: .directory)]
            + listing!.map { DirectoryListingEntry(name: $0.name, inode: $0.fid.vnode, type: $0.type) }
    }

    public func readlink(_ inode: Inode) throws -> String {
        let link = try node(inode).fid
        try revalidate(link)
        if let target = table.withLock({ t in t[fid: link]?.symlinkTarget }) { return target }
        return try perform(.readlink(link)) { reply, _ in
            guard case .readlink(let status, let target) = reply else { throw FileSystemError.unexpectedReply }
            table.withLock { t in
                t.apply(status)
                t.update(link) { $0.symlinkTarget = target }
            }
            return target
        }
    }

    // MARK: Namespace changes

    /// A namespace procedure through the pipeline (no stamp: no promise to guard). It keeps a
    /// directory's cached names (updated by `edit`, given each changed directory's FID) when ours
    /// was its only change, and drops them on any other.
    func change(_ request: Request,
                edit: (_ table: inout NFSNodeTable, _ directory: FID, _ change: NamespaceChange) -> Void = { _, _, _ in }) throws -> NamespaceChange {
        try perform(request) { reply, _ in
            guard case .namespace(let change, _) = reply else { throw FileSystemError.unexpectedReply }
            return table.withLock { t in
                for status in change.changedDirectories {
                    // A value, not a copy of the node: `edit` changes the node's names in place.
                    let known = t[fid: status.fid]?.status.dataVersion
                    let ownChange = known.flatMap { $0 + 1 == status.dataVersion ? $0 : nil }
                    t.apply(status, ownChangeFrom: ownChange)
                    t.update(status.fid) { $0.listing = nil }
                    edit(&t, status.fid, change)
                }
                if let target = change.target, target.linkCount > 0 { t.apply(target) }
                return change
            }
        }
    }

    func createdEntry(_ request: Request, parent: Inode, name: String) throws -> Entry {
        try FileSystemError.checkName(name)
        let change = try change(request) { t, directory, change in
            if directory.vnode == parent, let target = change.target { t.update(directory) { $0.names[name] = target.fid.vnode } }
        }
        guard let target = change.target else { throw FileSystemError(EIO, "reply without the new object") }
        return try entry(target.fid, in: try node(parent).fid, parent: parent, name: name)
    }

    func fid(of inode: Inode) throws -> FID { try node(inode).fid }

    /// The new file is empty on the server and here: its blocks are written locally until close.
    func openCreated(_ entry: Entry, flags: Int32) throws -> OpenReply {
        let node = try node(entry.inode)
        try table.withLock { t in
            try t.updateKnown(node.fid) { node in
                node.openCount += 1
                node.kernelVersion = node.status.dataVersion
            }
        }
        return OpenReply(handle: core.handles.insert(NFSOpenFile(fid: node.fid, locks: node.locks)), keepCache: false, flags: flags)
    }

    public func makeDirectory(parent: Inode, name: String, mode: UInt32, context: RequestContext) throws -> Entry {
        try createdEntry(.makeDir(try createRequest(parent: parent, name: name, type: .directory, mode: mode, context: context)),
                    parent: parent, name: name)
    }

    public func symlink(parent: Inode, name: String, target: String, context: RequestContext) throws -> Entry {
        let request = try createRequest(parent: parent, name: name, type: .symlink, mode: 0o777, target: target, context: context)
        return try createdEntry(.symlink(request), parent: parent, name: name)
    }

    public func unlink(parent: Inode, name: String) throws {
        let directory = try node(parent).fid
        let open = table.withLock { t in
            t[fid: directory]?.names[name]?.flatMap { t.nodes[$0] }.flatMap { $0.openCount > 0 ? $0.fid : nil }
        }
        if let open { try holdBlocks(of: open) }
        var removedOpenFile = false
        defer { if let open, !removedOpenFile { table.withLock { t in t.releaseHeldBlocks(of: open) } } }
        let change = try change(.removeFile(directory: directory, name: name)) { t, directory, _ in
            if directory.vnode == parent { t.update(directory) { $0.names[name] = .some(nil) } }
        }
        if let open, let target = change.target, target.fid == open, target.linkCount == 0 {
            removedOpenFile = true
            table.withLock { t in
                t.update(open) { node in
                    node.removed = true
                    node.status.linkCount = 0
                }
            }
        }
    }

    public func removeDirectory(parent: Inode, name: String) throws {
        _ = try change(.removeDir(directory: try node(parent).fid, name: name)) { t, directory, _ in
            if directory.vnode == parent { t.update(directory) { $0.names[name] = .some(nil) } }
        }
    }

    public func rename(parent: Inode, name: String, newParent: Inode, newName: String, noReplace: Bool) throws {
        try FileSystemError.checkName(newName)
        if noReplace {
            do {
                _ = try lookup(parent: newParent, name: newName)
                throw FileSystemError.exists
            } catch let error as FileSystemError where error.errno == ENOENT {}
        }
        let request = Request.rename(fromDirectory: try node(parent).fid, fromName: name,
                                        toDirectory: try node(newParent).fid, toName: newName)
        _ = try change(request) { t, directory, change in
            if directory.vnode == parent { t.update(directory) { $0.names[name] = .some(nil) } }
            if directory.vnode == newParent, let target = change.target {
                t.update(directory) { $0.names[newName] = target.fid.vnode }
                t.update(target.fid) { moved in
                    moved.parent = newParent
                    moved.name = newName
                }
            }
        }
    }

    public func setAttributes(_ inode: Inode, _ changes: SetAttributes, handle: UInt64?) throws -> Attributes {
        // Values, not a copy of the node, which would stay alive through the write-back.
        let (fid, removed, locks) = try table.withLock { t in
            guard let node = t.nodes[inode] else { throw FileSystemError.stale }
            return (node.fid, node.removed, node.locks)
        }
        if removed { return try setRemovedFileAttributes(fid, changes) }
        // A size change and the file's writes take turns (`NFSNodeLocks.writes`): a write's block
        // read before the truncate and stored after it would bring truncated bytes back.
        guard changes.size != nil else { return try storeAttributes(fid, changes) }
        return try locks.writes.withLock {
            // No WRITE of this file may be unanswered while the SETATTR is out (`writeBacks`).
            try locks.writeBacks.withLock {
                try writeBackHoldingLock(fid)
                return try storeAttributes(fid, changes)
            }
        }
    }

    private func storeAttributes(_ fid: FID, _ changes: SetAttributes) throws -> Attributes {
        try perform(.storeStatus(fid, changes)) { reply, _ in
            guard case .status(let status, _) = reply else { throw FileSystemError.unexpectedReply }
            table.withLock { t in
                if let size = changes.size {
                    t.dropCachedData(fid)
                    // Nothing past the new end may be sent later, nor count in the size: a block
                    // still dirty there (none should be, after the write-back above) would bring
                    // truncated bytes back at the next flush.
                    t.update(fid) { trimDirtyBlocks(&$0, to: size) }
                }
                t.apply(status, ownChangeFrom: t[fid: fid]?.status.dataVersion)
                if changes.size != nil { t.update(fid) { $0.status.size = status.size } }
            }
        }
        return try attributes(fid)
    }

    /// Drops the dirty bytes of `node` at and past `size`.
    private func trimDirtyBlocks(_ node: inout NFSNode, to size: UInt64) {
        let blockSize = UInt64(options.blockSize)
        for (index, var block) in node.dirtyBlocks {
            let start = index * blockSize
            if start >= size {
                node.dirtyBlocks[index] = nil
            } else if start + UInt64(block.data.count) > size {
                let keep = Int(size - start)
                block.data.removeLast(block.data.count - keep)
                block.dirtyEnd = min(block.dirtyEnd, keep)
                block.dirtyStart = min(block.dirtyStart, block.dirtyEnd)
                // Nothing left to send: clean, unless it holds an unlinked file's content.
                node.dirtyBlocks[index] = block.dirtyEnd > block.dirtyStart || node.removed ? block : nil
            }
        }
    }

    /// A file unlinked while open changes only here: its held blocks are its content.
    private func setRemovedFileAttributes(_ fid: FID, _ changes: SetAttributes) throws -> Attributes {
        table.withLock { t in
            t.update(fid) { node in
                if let size = changes.size { trimDirtyBlocks(&node, to: size) }
                node.status.applyLocally(changes)
            }
        }
        return try attributes(fid)
    }
}
