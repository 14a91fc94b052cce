import Foundation
import PeachProtocol

/// File data in the NFS-style client: blocks READ on demand and cached in memory; writes kept
/// as dirty blocks and sent with WRITE on close and fsync, then COMMIT.
extension NFSCacheManager {
    var blockSize: Int { options.blockSize }

    public func open(_ inode: Inode, flags: Int32) throws -> OpenReply {
        statistics.update { $0.opens += 1 }
        let node = try node(inode)
        guard table.withLock({ t in node.status.type }) == .regular else {
            throw table.withLock({ t in node.isDirectory }) ? FileSystemError.isDirectory : FileSystemError.invalid
        }
        // Close-to-open: fresh attributes at every open; nocto trusts the attribute cache.
        var askedServer = try revalidate(node, force: options.cto)
        if flags & O_TRUNC != 0 {
            _ = try setAttributes(inode, SetAttributes(size: 0), handle: nil)
            askedServer = true
        }
        let keepCache = table.withLock { t -> Bool in
            node.openCount += 1
            let keep = node.kernelVersion == node.status.dataVersion
            node.kernelVersion = node.status.dataVersion
            return keep
        }
        if !askedServer { statistics.update { $0.openHits += 1 } }
        return OpenReply(handle: core.handles.insert(NFSOpenFile(node: node)), keepCache: keepCache, flags: flags)
    }

    public func release(handle: UInt64) {
        guard let file = core.handles.remove(handle) else { return }
        table.withLock { t in
            let node = file.node
            node.openCount -= 1
            if node.removed && node.openCount == 0 {
                // The last descriptor of an unlinked file: its data goes with it.
                node.dirtyBlocks = [:]
                if t.nodes[node.inode] === node { t.nodes[node.inode] = nil }
                statistics.update { $0.vnodes = t.nodes.count }
                return
            }
            t.releaseIfForgotten(node)
        }
    }

    public func read(handle: UInt64, offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let node = try core.handles.get(handle).node
        // An expired attribute cache is revalidated before cached blocks are trusted again.
        try revalidate(node)
        let size = table.withLock { t in node.status.size }
        guard offset < size else {
            statistics.update { $0.reads += 1 }
            return 0
        }
        let end = min(size, offset + UInt64(buffer.count))
        var position = offset
        var hitBytes: UInt64 = 0
        while position < end {
            let index = position / UInt64(blockSize)
            let blockStart = index * UInt64(blockSize)
            let (block, wasCached) = try blockForRead(node, index: index)
            let inBlock = Int(position - blockStart)
            // The block's bytes within the file. A block holds fewer when the file has a hole up
            // to a later write (the server's READ stops at its end of file, or a write past the
            // end made the block): the rest reads as zeros.
            let count = min(Int(end - position), Int(min(UInt64(blockSize), size - blockStart)) - inBlock)
            guard count > 0 else { break }
            let held = max(0, min(count, block.count - inBlock))
            let target = buffer.baseAddress!.advanced(by: Int(position - offset))
            block.withUnsafeBytes { source in
                if held > 0 { target.copyMemory(from: source.baseAddress! + inBlock, byteCount: held) }
            }
            if held < count { target.advanced(by: held).initializeMemory(as: UInt8.self, repeating: 0, count: count - held) }
            if wasCached { hitBytes += UInt64(count) }
            position += UInt64(count)
        }
        let n = Int(position - offset)
        statistics.update {
            $0.reads += 1
            $0.readBytes += UInt64(n)
            $0.readHitBytes += hitBytes
        }
        return n
    }

    /// A block's content: dirty, cached, or READ now. `cached` is false when it took a READ.
    private func blockForRead(_ node: NFSNode, index: UInt64) throws -> (data: [UInt8], cached: Bool) {
        if let local = table.withLock({ t in node.dirtyBlocks[index]?.data ?? t.blocks.get(BlockKey(inode: node.inode, index: index)) }) {
            return (local, true)
        }
        return (try readBlock(node, index: index), false)
    }

    /// READ of one block, cached as clean.
    private func readBlock(_ node: NFSNode, index: UInt64) throws -> [UInt8] {
        try perform(.read(node.fid, offset: index * UInt64(blockSize), count: UInt32(blockSize))) { reply, _ in
            guard case .read(let status, let data) = reply else { throw FileSystemError.unexpectedReply }
            table.withLock { t in
                // Older than what is known (a READ that raced a truncate or write): its data is
                // returned to this read, not cached. Nor is a block written here meanwhile (a write
                // on another FUSE thread, such as a mapped page's, while this READ was out): the
                // server's copy is older than the dirty one, and would come back once that is sent.
                guard status.dataVersion >= node.status.dataVersion, node.dirtyBlocks[index] == nil else { return }
                t.apply(status)
                let evicted = t.blocks.set(BlockKey(inode: node.inode, index: index), data, cost: data.count)
                node.cachedBlocks.insert(index)
                for key in evicted { t.nodes[key.inode]?.cachedBlocks.remove(key.index) }
                let total = UInt64(t.blocks.totalCost)
                statistics.update {
                    $0.evictions += evicted.count
                    $0.cacheBytes = total
                }
            }
            return data
        }
    }

    /// The blocks `buffer` covers, changed from their dirty, cached or READ content, by
    /// `writer`, who takes the set-id bits away unless root (as the server will when the WRITE
    /// arrives; fstat shows it at once). Caller holds `node.writes`.
    private func writeBlocks(_ node: NFSNode, offset: UInt64, from buffer: UnsafeRawBufferPointer, by writer: UInt32) throws {
        var position = offset
        let end = offset + UInt64(buffer.count)
        while position < end {
            let index = position / UInt64(blockSize)
            let blockStart = index * UInt64(blockSize)
            let inBlock = Int(position - blockStart)
            let count = min(Int(end - position), blockSize - inBlock)
            var block = try dirtyBlock(node, index: index, coversWholeBlock: inBlock == 0 && count == blockSize)
            if block.data.count < inBlock + count { block.data += [UInt8](repeating: 0, count: inBlock + count - block.data.count) }
            block.data.withUnsafeMutableBytes { target in
                target.baseAddress!.advanced(by: inBlock).copyMemory(from: buffer.baseAddress!.advanced(by: Int(position - offset)), byteCount: count)
            }
            block.dirtyStart = min(block.dirtyStart, inBlock)
            block.dirtyEnd = max(block.dirtyEnd, inBlock + count)
            table.withLock { t in
                node.dirtyBlocks[index] = block
                t.blocks.remove(BlockKey(inode: node.inode, index: index))
                node.cachedBlocks.remove(index)
                node.status.size = max(node.status.size, position + UInt64(count))
                node.status.mtime = Timespec.now()
                node.status.losePrivilegeBits(onWriteBy: writer)
            }
            position += UInt64(count)
        }
    }

    public func write(handle: UInt64, offset: UInt64, from buffer: UnsafeRawBufferPointer) throws -> Int {
        let node = try core.handles.get(handle).node
        let writer = Caller.userID
        try node.writes.withLock { try writeBlocks(node, offset: offset, from: buffer, by: writer) }
        statistics.update {
            $0.writes += 1
            $0.writeBytes += UInt64(buffer.count)
        }
        // noac: writes go to the server at once (nfs(5): noac implies sync).
        if options.noac { try writeBack(node, commit: false) }
        return buffer.count
    }

    /// Before an open file is unlinked: every block not held yet is READ and held with the dirty
    /// ones (a clean range), so the open descriptors can read the whole file once the server has
    /// removed it, as the Linux NFS client's silly rename allows. A file larger than the block
    /// cache is not held: its unread blocks become unreadable (ESTALE).
    func holdBlocks(of node: NFSNode) throws {
        let size = table.withLock { t in node.status.size }
        guard size <= options.cacheSize else { return }
        let count = (size + UInt64(blockSize) - 1) / UInt64(blockSize)
        for index in 0..<count {
            guard table.withLock({ t in node.dirtyBlocks[index] == nil }) else { continue }
            let (data, _) = try blockForRead(node, index: index)
            table.withLock { t in
                if node.dirtyBlocks[index] == nil { node.dirtyBlocks[index] = DirtyBlock(data: data, dirtyStart: Int.max, dirtyEnd: 0) }
            }
        }
    }

    /// The dirty block to change, starting from the current content: a whole-block write needs
    /// none; beyond the end of the file it is zeros; otherwise the cached or READ block.
    private func dirtyBlock(_ node: NFSNode, index: UInt64, coversWholeBlock: Bool) throws -> DirtyBlock {
        let existing = table.withLock { t -> DirtyBlock? in
            if let dirty = node.dirtyBlocks[index] { return dirty }
            if let clean = t.blocks.get(BlockKey(inode: node.inode, index: index)) {
                return DirtyBlock(data: clean, dirtyStart: Int.max, dirtyEnd: 0)
            }
            return nil
        }
        if let existing { return existing }
        let size = table.withLock { t in node.status.size }
        if coversWholeBlock || index * UInt64(blockSize) >= size {
            return DirtyBlock(data: [], dirtyStart: Int.max, dirtyEnd: 0)
        }
        return DirtyBlock(data: try readBlock(node, index: index), dirtyStart: Int.max, dirtyEnd: 0)
    }

    public func flush(handle: UInt64) throws {
        let node = try core.handles.get(handle).node
        guard table.withLock({ t in node.isDirty }) else { return }
        do {
            try writeBack(node, commit: true)
        } catch {
            core.logger.warning("store failed", metadata: ["fid": "\(node.fid)", "error": "\(error)"])
            throw error
        }
    }

    public func fsync(handle: UInt64) throws {
        try flush(handle: handle)
    }

    /// WRITE of every dirty block (its dirty range), then COMMIT. A block is clean once its WRITE
    /// succeeded; on failure the rest stay dirty and the error goes to close(2) or fsync(2).
    func writeBack(_ node: NFSNode, commit: Bool) throws {
        // An unlinked file's writes stay here: nobody can open it any more.
        guard !table.withLock({ t in node.removed }) else { return }
        // Written at close for the closing process; at unmount, for the file's owner.
        let owner = table.withLock { t in Credential(uid: node.status.uid, gid: node.status.gid) }
        try node.writeBacks.withLock { try Caller.unlessNamed(owner) { try writeDirtyBlocks(node, commit: commit) } }
    }

    /// As `writeBack`, for a caller that holds `node.writeBacks`.
    func writeBackHoldingLock(_ node: NFSNode) throws {
        guard !table.withLock({ t in node.removed || !node.isDirty }) else { return }
        let owner = table.withLock { t in Credential(uid: node.status.uid, gid: node.status.gid) }
        try Caller.unlessNamed(owner) { try writeDirtyBlocks(node, commit: false) }
    }

    private func writeDirtyBlocks(_ node: NFSNode, commit: Bool) throws {
        let dirty = table.withLock { t in node.dirtyBlocks.sorted { $0.key < $1.key } }
        for (index, block) in dirty where block.dirtyEnd > block.dirtyStart {
            let slice = Array(block.data[block.dirtyStart..<block.dirtyEnd])
            let offset = index * UInt64(blockSize) + UInt64(block.dirtyStart)
            try perform(.write(node.fid, offset: offset, data: slice)) { reply, _ in
                guard case .write(let before, let status) = reply else { throw FileSystemError.unexpectedReply }
                table.withLock { t in
                    if node.dirtyBlocks[index]?.dirtyEnd == block.dirtyEnd, node.dirtyBlocks[index]?.data == block.data {
                        node.dirtyBlocks[index] = nil
                        let key = BlockKey(inode: node.inode, index: index)
                        if block.data.count == blockSize || offset + UInt64(slice.count) >= status.size {
                            // Now a clean block of the new version.
                            t.blocks.set(key, block.data, cost: block.data.count)
                            node.cachedBlocks.insert(index)
                        } else {
                            // Part of a block: the rest is the server's. No older copy may stand for it.
                            t.blocks.remove(key)
                            node.cachedBlocks.remove(index)
                        }
                    }
                    let ours = node.kernelVersion == before
                    t.apply(status, ownChangeFrom: before)
                    // The kernel's pages hold what we wrote.
                    if ours { node.kernelVersion = status.dataVersion }
                }
            }
        }
        if commit {
            try perform(.commit(node.fid)) { reply, _ in
                guard case .status(let status, _) = reply else { throw FileSystemError.unexpectedReply }
                table.withLock { t in _ = t.apply(status) }
            }
        }
    }
}
