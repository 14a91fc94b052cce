import Glibc
import PeachProtocol

/// What `peach fs` asks of the NFS-style cache manager besides its statistics.
extension NFSCacheManager {
    public func cacheParameters() -> CacheParameters {
        table.withLock { t in
            CacheParameters(usedBytes: UInt64(t.blocks.totalCost), limitBytes: UInt64(t.blocks.capacity),
                            files: t.allNodes.filter { !$0.cachedBlocks.isEmpty }.count)
        }
    }

    /// The block cache holds clean blocks only (dirty ones wait apart), so any may go.
    /// NFS mode writes back at close already (its design: flush on close); store-behind is the
    /// AFS-mode cache manager's.
    public func storeBehindState() throws -> StoreBehindState {
        throw FileSystemError(EOPNOTSUPP, "store-behind is an AFS-mode setting")
    }

    public func setStoreBehind(_ enabled: Bool) throws {
        throw FileSystemError(EOPNOTSUPP, "store-behind is an AFS-mode setting")
    }

    public func setCacheSize(_ bytes: UInt64) -> CacheParameters {
        table.withLock { t in
            t.forgetEvicted(t.blocks.resize(to: Int(clamping: bytes)))
        }
        statistics.metrics.limitBytes.record(Int64(clamping: bytes))
        core.logger.notice("cache size set", metadata: ["bytes": "\(bytes)"])
        return cacheParameters()
    }

    public func storeAllDirty() -> SyncReport {
        let dirty = table.withLock { t in t.allNodes.filter { $0.isDirty && !$0.removed }.map(\.fid) }
        var failed: [UnsavedFile] = []
        for fid in dirty {
            do { try writeBack(fid, commit: true) } catch {
                failed.append(UnsavedFile(fid: fid.description, path: nil, error: "\(error)"))
            }
        }
        return SyncReport(stored: dirty.count - failed.count, failed: failed)
    }

    /// Dirty blocks are written first; then every node nothing holds open loses its clean data.
    public func flushAll() -> FlushReport {
        let sync = storeAllDirty()
        return table.withLock { t in
            var report = FlushReport(dropped: 0, keptOpen: 0, failed: sync.failed)
            for node in t.allNodes where !node.isDirty {
                guard node.openCount == 0 else {
                    report.keptOpen += 1
                    continue
                }
                let hadData = !node.cachedBlocks.isEmpty || node.listing != nil || node.symlinkTarget != nil
                t.dropCachedData(node.fid)
                t.update(node.fid) { $0.fetchedAt = 0 }
                if hadData { report.dropped += 1 }
            }
            return report
        }
    }
}
