import PeachProtocol

/// What `peach fs` asks of the NFS-style cache manager besides its statistics.
extension NFSCacheManager {
    public func cacheParameters() -> CacheParameters {
        table.withLock { t in
            CacheParameters(usedBytes: UInt64(t.blocks.totalCost), limitBytes: options.cacheSize,
                            files: t.nodes.values.filter { !$0.cachedBlocks.isEmpty }.count)
        }
    }

    public func storeAllDirty() -> SyncReport {
        let dirty = table.withLock { t in t.nodes.values.filter { $0.isDirty && !$0.removed } }
        var failed: [UnsavedFile] = []
        for node in dirty {
            do { try writeBack(node, commit: true) } catch {
                failed.append(UnsavedFile(fid: node.fid.description, path: nil, error: "\(error)"))
            }
        }
        return SyncReport(stored: dirty.count - failed.count, failed: failed)
    }

    /// Dirty blocks are written first; then every node nothing holds open loses its clean data.
    public func flushAll() -> FlushReport {
        let sync = storeAllDirty()
        return table.withLock { t in
            var report = FlushReport(dropped: 0, keptOpen: 0, failed: sync.failed)
            for node in t.nodes.values where !node.isDirty {
                guard node.openCount == 0 else {
                    report.keptOpen += 1
                    continue
                }
                let hadData = !node.cachedBlocks.isEmpty || node.listing != nil || node.symlinkTarget != nil
                t.dropCachedData(node)
                node.fetchedAt = 0
                if hadData { report.dropped += 1 }
            }
            return report
        }
    }
}
