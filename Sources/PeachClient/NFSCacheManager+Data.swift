import Foundation
import PeachProtocol

/// File data in the NFS-style client: blocks READ on demand and cached in memory; writes kept
/// as dirty blocks and sent with WRITE on close and fsync, then COMMIT.
extension NFSCacheManager {
    var blockSize: Int { options.blockSize }

    public func open(_ inode: Inode, flags: Int32) throws -> OpenReply {
        statistics.update { $0.opens += 1 }
        let (fid, type, locks) = try table.withLock { t in
            guard let node = t.nodes[inode] else { throw FileSystemError.stale }
            return (node.fid, node.status.type, node.locks)
        }
        guard type == .regular else { throw type == .directory ? FileSystemError.isDirectory : FileSystemError.invalid }
        // Close-to-open: fresh attributes at every open; nocto trusts the attribute cache.
        var askedServer = try revalidate(fid, force: options.cto)
        if flags & O_TRUNC != 0 {
            _ = try setAttributes(inode, SetAttributes(size: 0), handle: nil)
            askedServer = true
        }
        let keepCache = try table.withLock { t in
            try t.updateKnown(fid) { node -> Bool in
                node.openCount += 1
                let keep = node.kernelVersion == node.status.dataVersion
                node.kernelVersion = node.status.dataVersion
                return keep
            }
        }
        if !askedServer { statistics.update { $0.openHits += 1 } }
        return OpenReply(handle: core.handles.insert(NFSOpenFile(fid: fid, locks: locks)), keepCache: keepCache, flags: flags)
    }

    public func release(handle: UInt64) {
        guard let file = core.handles.remove(handle) else { return }
        table.withLock { t in t.closed(file.fid) }
    }

    public func read(handle: UInt64, offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let fid = try core.handles.get(handle).fid
        // An expired attribute cache is revalidated before cached blocks are trusted again.
        try revalidate(fid)
        let size = try node(fid).status.size
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
            let (block, wasCached) = try blockForRead(fid, index: index)
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
    private func blockForRead(_ fid: FID, index: UInt64) throws -> (data: [UInt8], cached: Bool) {
        if let local = table.withLock({ t in t[fid: fid]?.dirtyBlocks[index]?.data ?? t.blocks.get(BlockKey(fid: fid, index: index)) }) {
            return (local, true)
        }
        return (try readBlock(fid, index: index), false)
    }

    /// READ of one block, cached as clean.
    private func readBlock(_ fid: FID, index: UInt64) throws -> [UInt8] {
        try perform(.read(fid, offset: index * UInt64(blockSize), count: UInt32(blockSize))) { reply, _ in
            guard case .read(let status, let data) = reply else { throw FileSystemError.unexpectedReply }
            table.withLock { t in
                // Older than what is known (a READ that raced a truncate or write): its data is
                // returned to this read, not cached. Nor is a block written here meanwhile (a write
                // on another FUSE thread, such as a mapped page's, while this READ was out): the
                // server's copy is older than the dirty one, and would come back once that is sent.
                // Decided on values, not a copy of the node, which would stay alive through
                // `cacheBlock` and make it copy the node's block set.
                guard let (known, dirty) = t[fid: fid].map({ ($0.status.dataVersion, $0.dirtyBlocks[index] != nil) }),
                      status.dataVersion >= known, !dirty else { return }
                t.apply(status)
                t.cacheBlock(fid, index: index, data)
            }
            return data
        }
    }

    /// The blocks `buffer` covers, changed from their dirty, cached or READ content, by
    /// `writer`, who takes the set-id bits away unless root (as the server will when the WRITE
    /// arrives; fstat shows it at once). Caller holds `node.writes`.
    private func writeBlocks(_ fid: FID, offset: UInt64, from buffer: UnsafeRawBufferPointer, by writer: UInt32) throws {
        var position = offset
        let end = offset + UInt64(buffer.count)
        while position < end {
            let index = position / UInt64(blockSize)
            let blockStart = index * UInt64(blockSize)
            let inBlock = Int(position - blockStart)
            let count = min(Int(end - position), blockSize - inBlock)
            var block = try dirtyBlock(fid, index: index, coversWholeBlock: inBlock == 0 && count == blockSize)
            if block.data.count < inBlock + count { block.data += [UInt8](repeating: 0, count: inBlock + count - block.data.count) }
            block.data.withUnsafeMutableBytes { target in
                target.baseAddress!.advanced(by: inBlock).copyMemory(from: buffer.baseAddress!.advanced(by: Int(position - offset)), byteCount: count)
            }
            block.dirtyStart = min(block.dirtyStart, inBlock)
            block.dirtyEnd = max(block.dirtyEnd, inBlock + count)
            let end = position + UInt64(count)
            try table.withLock { t in
                t.uncacheBlock(fid, index: index)
                try t.updateKnown(fid) { node in
                    node.dirtyBlocks[index] = block
                    node.status.size = max(node.status.size, end)
                    node.status.mtime = Timespec.now()
                    node.status.losePrivilegeBits(onWriteBy: writer)
                }
            }
            position += UInt64(count)
        }
    }

    public func write(handle: UInt64, offset: UInt64, from buffer: UnsafeRawBufferPointer) throws -> Int {
        let file = try core.handles.get(handle)
        let writer = Caller.userID
        try file.locks.writes.withLock { try writeBlocks(file.fid, offset: offset, from: buffer, by: writer) }
        statistics.update {
            $0.writes += 1
            $0.writeBytes += UInt64(buffer.count)
        }
        // noac: writes go to the server at once (nfs(5): noac implies sync).
        if options.noac { try writeBack(file.fid, commit: false) }
        return buffer.count
    }

    /// Before an open file is unlinked: every block not held yet is READ and held with the dirty
    /// ones (a clean range), so the open descriptors can read the whole file once the server has
    /// removed it, as the Linux NFS client's silly rename allows. A file larger than the block
    /// cache is not held: its unread blocks become unreadable (ESTALE).
    func holdBlocks(of fid: FID) throws {
        let size = try node(fid).status.size
        guard size <= options.cacheSize else { return }
        let count = (size + UInt64(blockSize) - 1) / UInt64(blockSize)
        for index in 0..<count {
            guard table.withLock({ t in t[fid: fid]?.dirtyBlocks[index] == nil }) else { continue }
            let (data, _) = try blockForRead(fid, index: index)
            table.withLock { t in
                t.update(fid) { node in
                    if node.dirtyBlocks[index] == nil { node.dirtyBlocks[index] = DirtyBlock(data: data, dirtyStart: Int.max, dirtyEnd: 0) }
                }
            }
        }
    }

    /// The dirty block to change, starting from the current content: a whole-block write needs
    /// none; beyond the end of the file it is zeros; otherwise the cached or READ block.
    private func dirtyBlock(_ fid: FID, index: UInt64, coversWholeBlock: Bool) throws -> DirtyBlock {
        let (existing, size) = try table.withLock { t -> (DirtyBlock?, UInt64) in
            let node = try t.node(fid)
            if let dirty = node.dirtyBlocks[index] { return (dirty, node.status.size) }
            if let clean = t.blocks.get(BlockKey(fid: fid, index: index)) {
                return (DirtyBlock(data: clean, dirtyStart: Int.max, dirtyEnd: 0), node.status.size)
            }
            return (nil, node.status.size)
        }
        if let existing { return existing }
        if coversWholeBlock || index * UInt64(blockSize) >= size {
            return DirtyBlock(data: [], dirtyStart: Int.max, dirtyEnd: 0)
        }
        return DirtyBlock(data: try readBlock(fid, index: index), dirtyStart: Int.max, dirtyEnd: 0)
    }

    public func flush(handle: UInt64) throws {
        let fid = try core.handles.get(handle).fid
        guard table.withLock({ t in t[fid: fid]?.isDirty ?? false }) else { return }
        do {
            try writeBack(fid, commit: true)
        } catch {
            core.logger.warning("store failed", metadata: ["fid": "\(fid)", "error": "\(error)"])
            throw error
        }
    }

    public func fsync(handle: UInt64) throws {
        try flush(handle: handle)
    }

    /// WRITE of every dirty block (its dirty range), then COMMIT. A block is clean once its WRITE
    /// succeeded; on failure the rest stay dirty and the error goes to close(2) or fsync(2).
    /// A node gone from the table (written back and released by another close) has nothing to send.
    func writeBack(_ fid: FID, commit: Bool) throws {
        // An unlinked file's writes stay here: nobody can open it any more. Written at close for
        // the closing process; at unmount, for the file's owner.
        guard let (owner, locks) = writeBackOwner(fid) else { return }
        try locks.writeBacks.withLock { try Caller.unlessNamed(owner) { try writeDirtyBlocks(fid, commit: commit) } }
    }

    /// As `writeBack`, for a caller that holds the node's `writeBacks`.
    func writeBackHoldingLock(_ fid: FID) throws {
        guard table.withLock({ t in t[fid: fid]?.isDirty ?? false }), let (owner, _) = writeBackOwner(fid) else { return }
        try Caller.unlessNamed(owner) { try writeDirtyBlocks(fid, commit: false) }
    }

    /// Who a write-back of `fid` acts for, and its locks; nil if there is nothing to write back.
    /// Values, not a copy of the node: a copy kept through the write-back would make each reply's
    /// change to the node's blocks copy them whole.
    private func writeBackOwner(_ fid: FID) -> (Credential, NFSNodeLocks)? {
        table.withLock { t in
            t[fid: fid].flatMap { $0.removed ? nil : (Credential(uid: $0.status.uid, gid: $0.status.gid), $0.locks) }
        }
    }

    private func writeDirtyBlocks(_ fid: FID, commit: Bool) throws {
        let dirty = table.withLock { t in t[fid: fid]?.dirtyBlocks.sorted { $0.key < $1.key } ?? [] }
        for (index, block) in dirty where block.dirtyEnd > block.dirtyStart {
            let slice = Array(block.data[block.dirtyStart..<block.dirtyEnd])
            let offset = index * UInt64(blockSize) + UInt64(block.dirtyStart)
            try perform(.write(fid, offset: offset, data: slice)) { reply, _ in
                guard case .write(let before, let status) = reply else { throw FileSystemError.unexpectedReply }
                table.withLock { t in
                    let current = t[fid: fid]?.dirtyBlocks[index]
                    if current?.dirtyEnd == block.dirtyEnd, current?.data == block.data {
                        t.update(fid) { $0.dirtyBlocks[index] = nil }
                        if block.data.count == blockSize || offset + UInt64(slice.count) >= status.size {
                            // Now a clean block of the new version.
                            t.cacheBlock(fid, index: index, block.data)
                        } else {
                            // Part of a block: the rest is the server's. No older copy may stand for it.
                            t.uncacheBlock(fid, index: index)
                        }
                    }
                    let ours = t[fid: fid]?.kernelVersion == before
                    t.apply(status, ownChangeFrom: before)
                    // The kernel's pages hold what we wrote.
                    if ours { t.update(fid) { $0.kernelVersion = status.dataVersion } }
                }
            }
        }
        if commit {
            try perform(.commit(fid)) { reply, _ in
                guard case .status(let status, _) = reply else { throw FileSystemError.unexpectedReply }
                table.withLock { t in _ = t.apply(status) }
            }
        }
        table.withLock { t in t.writtenBack(fid) }
    }
}
