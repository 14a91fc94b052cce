import Glibc
import PeachProtocol

/// What `peach fs` asks of the AFS-mode cache manager besides its statistics.
extension AFSCacheManager {
    public func cacheParameters() -> CacheParameters {
        CacheParameters(usedBytes: disk.totalBytes, limitBytes: disk.sizeLimit, files: disk.count)
    }

    /// Dirty and open files stay: the cache may stay over its new limit until they are stored or closed.
    public func storeBehindState() -> StoreBehindState {
        StoreBehindState(enabled: storeBehind.isEnabled, pending: storeBehind.pendingCount)
    }

    public func setStoreBehind(_ enabled: Bool) {
        storeBehind.set(enabled: enabled)
    }

    public func setCacheSize(_ bytes: UInt64) -> CacheParameters {
        disk.setSizeLimit(bytes)
        statistics.metrics.limitBytes.record(Int64(clamping: bytes))
        makeRoom(for: 0)
        statistics.update { $0.cacheBytes = disk.totalBytes }
        core.logger.notice("cache size set", metadata: ["bytes": "\(bytes)"])
        return cacheParameters()
    }

    public func storeAllDirty() -> SyncReport {
        let dirty = table.withLock { t in
            t.allVnodes.filter { t.isDirty($0.fid) && !$0.removed }.map { ($0, t.path(of: $0, searchingListings: true)) }
        }
        var failed: [UnsavedFile] = []
        for (vnode, path) in dirty {
            do { try store(vnode.fid, fd: nil) } catch {
                failed.append(UnsavedFile(fid: vnode.fid.description, path: path, error: "\(error)"))
            }
        }
        return SyncReport(stored: dirty.count - failed.count, failed: failed)
    }

    /// Every vnode with cached data goes through `flushCachedCopy`; then the copies on disk of
    /// files the kernel already forgot.
    public func flushAll() -> FlushReport {
        let cached = table.withLock { t in
            t.vnodes.values.filter { $0.listing != nil || $0.symlinkTarget != nil || t.disk.entry($0.fid) != nil }
                .map { ($0, t.path(of: $0, searchingListings: true)) }
        }
        var report = FlushReport(dropped: 0, keptOpen: 0, failed: [])
        for (vnode, path) in cached {
            do {
                try flushCachedCopy(vnode.inode)
                report.dropped += 1
            } catch let error as FileSystemError where error.errno == EBUSY {
                report.keptOpen += 1
            } catch {
                report.failed.append(UnsavedFile(fid: vnode.fid.description, path: path, error: "\(error)"))
            }
        }
        let known = table.withLock { t in Set(t.allVnodes.map(\.fid)) }
        for fid in disk.cleanFIDs where !known.contains(fid) {
            disk.remove(fid)
            report.dropped += 1
        }
        statistics.update { $0.cacheBytes = disk.totalBytes }
        return report
    }
}
