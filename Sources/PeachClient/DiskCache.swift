import Foundation
import GRDB
import NIOConcurrencyHelpers
import PeachProtocol
import PeachSupport

/// The AFS-mode cache on local disk: one file per cached (FID, data version), named
/// `<vnode>.<unique>.<dataVersion>`, and an SQLite index of FID → data version, size, dirty
/// flag. The index survives a restart; every entry is then suspect until the cache manager
/// compares its data version with the server's.
///
/// Crash safety: a file is marked dirty in the index before its cache file is first changed,
/// and at start the size of a dirty entry is the size of its file (the index's size may lag the
/// last writes). A clean entry whose file has another size than indexed is dropped.
///
/// Only the dirty mark is written on the request path. Writes that leave an entry clean (a copy
/// installed, a store done, a copy removed) are written a moment later by a background queue,
/// many in one transaction (`persistLater`). That is safe because a file's name carries its data
/// version: after a crash, an entry the index did not get yet names a file that is gone (it is
/// skipped) or leaves a file unindexed (it is removed), and a clean copy lost costs a fetch.
final class DiskCache: Sendable {
    struct Entry: Sendable, Equatable {
        var fid: FID
        var dataVersion: UInt64
        var size: UInt64
        var dirty: Bool
        var lastUse: UInt64
        /// The path inside the mount when it became dirty, if known (for conflicts).
        var path: String? = nil
        /// Counts local changes (`markDirty`): a store clears `dirty` only if none came after
        /// the copy it sent was taken.
        var generation: UInt64 = 0
    }

    let directory: String
    /// The most bytes the cache holds; `peach fs setcachesize` changes it while mounted.
    var sizeLimit: UInt64 { limit.withLockedValue { $0 } }
    private let limit: NIOLockedValueBox<UInt64>
    let conflicts: ConflictStore
    private let index: DatabaseQueue
    /// The entries, and the sum of their sizes (kept, not recounted: stats read it at every fetch).
    private let entries = NIOLockedValueBox([FID: Entry]())
    private let total = NIOLockedValueBox<UInt64>(0)
    /// Held from an entry's change to its index write (`markDirty`, `markStored`, `install`); lock order: this, then
    /// `entries`, then `total`.
    private let persistLock = NIOLock()
    private let clock = NIOLockedValueBox<UInt64>(0)

    /// An index write waiting for the background queue, by FID (the latest wins).
    private enum PendingWrite {
        case put(Entry)
        case delete
    }
    /// Guarded by `persistLock`, as the writes themselves: a write made on the request path
    /// replaces any pending one for its FID, and a batch is written under the lock, so the index
    /// gets each FID's entries in the order they were made.
    private nonisolated(unsafe) var pending: [FID: PendingWrite] = [:]
    private nonisolated(unsafe) var flushScheduled = false
    private let indexWriter = DispatchQueue(label: "peach.cache-index")

    /// Files of copies that went, reused for new ones; every descriptor on a cache file goes
    /// through it (`open`, `create`, `close`).
    let spares: SpareCacheFiles

    /// Held until `close()`: one cache manager per cache directory.
    private let directoryLock: ExclusiveDirectoryLock.Held

    init(directory: String, sizeLimit: UInt64) throws {
        self.directory = directory
        limit = NIOLockedValueBox(sizeLimit)
        try FileManager.default.createDirectory(atPath: directory + "/files", withIntermediateDirectories: true)
        // Private to the mount, as OpenAFS's cache: the index holds the client id, and the files
        // hold whatever the mount's users read.
        guard chmod(directory, 0o700) == 0 else {
            throw FileSystemError(errno, "cannot make the cache directory \(directory) private")
        }
        directoryLock = try ExclusiveDirectoryLock.acquire(directory, what: "cache directory")
        conflicts = try ConflictStore(cacheDirectory: directory)
        spares = try SpareCacheFiles(cacheDirectory: directory)
        var configuration = Configuration()
        configuration.prepareDatabase { db in
            // A cache index: WAL without a sync per commit. After a crash the index may lag its
            // files; unindexed files are removed at start.
            try db.execute(sql: "PRAGMA journal_mode = WAL")
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
        }
        index = try DatabaseQueue(path: directory + "/index.sqlite", configuration: configuration)
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE cacheEntry (
                    vnode INTEGER NOT NULL, uniquifier INTEGER NOT NULL,
                    dataVersion INTEGER NOT NULL, size INTEGER NOT NULL, dirty INTEGER NOT NULL,
                    PRIMARY KEY (vnode, uniquifier)
                );
                CREATE TABLE identity (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
                """)
        }
        migrator.registerMigration("v2: the path of a dirty file") { db in
            try db.execute(sql: "ALTER TABLE cacheEntry ADD COLUMN path TEXT")
        }
        try migrator.migrate(index)
        for suffix in ["", "-wal", "-shm"] { chmod(directory + "/index.sqlite" + suffix, 0o600) }
        let rows = try index.read { db in try Row.fetchAll(db, sql: "SELECT * FROM cacheEntry") }
        var loaded: [FID: Entry] = [:]
        for row in rows {
            let fid = FID(vnode: UInt64(row["vnode"] as Int64), unique: UInt32(row["uniquifier"] as Int64))
            var entry = Entry(fid: fid, dataVersion: UInt64(row["dataVersion"] as Int64), size: UInt64(row["size"] as Int64),
                              dirty: (row["dirty"] as Int64) != 0, lastUse: 0, path: row["path"])
            var st = stat()
            guard stat(path(entry.fid, entry.dataVersion), &st) == 0 else { continue }
            if entry.dirty {
                // Writes after the index row was last written changed only the file.
                entry.size = UInt64(st.st_size)
            } else if entry.size != UInt64(st.st_size) {
                continue  // changed by a crash mid-truncate or mid-write: not the version it names
            }
            loaded[fid] = entry
        }
        entries.withLockedValue { $0 = loaded }
        total.withLockedValue { $0 = loaded.values.reduce(0) { $0 + $1.size } }
        removeUnindexedFiles(keeping: Set(loaded.values.map { path($0.fid, $0.dataVersion) }))
    }

    /// Writes the pending index entries, then releases the directory for another cache manager.
    func releaseDirectory() {
        flushIndex()
        directoryLock.release()
    }

    /// The client's persistent identity and restart counter, kept beside the cache.
    func identity() throws -> (clientID: String, epoch: UInt64) {
        try index.write { db in
            let id = try String.fetchOne(db, sql: "SELECT value FROM identity WHERE key = 'clientID'") ?? UUID().uuidString
            let epoch = (Int64(try String.fetchOne(db, sql: "SELECT value FROM identity WHERE key = 'epoch'") ?? "0") ?? 0) + 1
            try db.execute(sql: "INSERT OR REPLACE INTO identity (key, value) VALUES ('clientID', ?), ('epoch', ?)",
                           arguments: [id, String(epoch)])
            return (id, UInt64(epoch))
        }
    }

    private func removeUnindexedFiles(keeping: Set<String>) {
        let filesDirectory = directory + "/files"
        for name in (try? FileManager.default.contentsOfDirectory(atPath: filesDirectory)) ?? [] {
            let full = filesDirectory + "/" + name
            if !keeping.contains(full) { try? FileManager.default.removeItem(atPath: full) }
        }
    }

    func path(_ fid: FID, _ dataVersion: UInt64) -> String {
        "\(directory)/files/\(fid.vnode).\(fid.unique).\(dataVersion)"
    }

    /// Opens the cached copy of `fid` at `dataVersion`; close it with `close`.
    func open(_ fid: FID, _ dataVersion: UInt64, flags: Int32) throws -> SpareCacheFiles.Descriptor {
        guard let descriptor = spares.open(path(fid, dataVersion), flags: flags) else {
            throw FileSystemError(errno, "opening the cached copy")
        }
        return descriptor
    }

    /// A new, empty cache file at `path` (a spare if there is one); close it with `close`.
    func create(_ path: String, flags: Int32) throws -> SpareCacheFiles.Descriptor {
        guard let descriptor = spares.create(path, flags: flags) else { throw FileSystemError(errno, "creating a cache file") }
        return descriptor
    }

    func close(_ descriptor: SpareCacheFiles.Descriptor) { spares.close(descriptor) }

    func entry(_ fid: FID) -> Entry? {
        entries.withLockedValue { $0[fid] }
    }

    func touch(_ fid: FID) {
        let now = clock.withLockedValue { $0 += 1; return $0 }
        entries.withLockedValue { $0[fid]?.lastUse = now }
    }

    var totalBytes: UInt64 { total.withLockedValue { $0 } }

    /// Cached copies on disk now.
    var count: Int { entries.withLockedValue { $0.count } }

    /// The FIDs with a cached copy that is not dirty.
    var cleanFIDs: [FID] { entries.withLockedValue { $0.values.filter { !$0.dirty }.map(\.fid) } }

    /// Changes the entry for `fid` in place, in one hold of the lock (a change computed from an
    /// entry read earlier would undo a concurrent one: a store's new version undone by a write's
    /// dirty mark left the index naming a file that did not exist). Returns the entry as changed.
    @discardableResult
    private func update(_ fid: FID, _ change: (inout Entry) -> Void) -> Entry? {
        entries.withLockedValue { table in
            guard var entry = table[fid] else { return nil }
            let oldSize = entry.size
            change(&entry)
            table[fid] = entry
            total.withLockedValue { $0 = $0 - oldSize + entry.size }
            return entry
        }
    }

    /// Replaces the entry for `fid` (nil removes it) and keeps the total; returns the old one.
    @discardableResult
    private func replace(_ fid: FID, with entry: Entry?) -> Entry? {
        entries.withLockedValue { table in
            let old = table[fid]
            table[fid] = entry
            total.withLockedValue { $0 = $0 - (old?.size ?? 0) + (entry?.size ?? 0) }
            return old
        }
    }

    /// Records `fid` at `dataVersion` as held in its file; replaces (and deletes the file of) any
    /// older version. Descriptors open on an older file keep reading it.
    func install(_ entry: Entry) throws {
        var installed = entry
        installed.lastUse = clock.withLockedValue { $0 += 1; return $0 }
        try persistLock.withLock {
            let previous = replace(entry.fid, with: installed)
            if let previous, previous.dataVersion != entry.dataVersion {
                spares.retire(path(previous.fid, previous.dataVersion))
            }
            if installed.dirty { try persist(installed) } else { persistLater(entry.fid, .put(installed)) }
        }
    }

    /// The cached copy changes locally: new size, and dirty until stored. Called before the
    /// first change of a clean copy reaches its file, so that a crash leaves it marked dirty;
    /// `path` is kept with it, for a conflict. Throws if the mark could not be written: the
    /// change must then not reach the file.
    /// Returns the entry's generation after this change, for `undoDirtyMark`.
    @discardableResult
    func markDirty(_ fid: FID, size: UInt64, path: String? = nil) throws -> UInt64 {
        try persistLock.withLock {
            var changed = false
            let entry = update(fid) { e in
                changed = !e.dirty
                e.dirty = true
                e.size = size
                e.generation &+= 1
                if changed { e.path = path }
            }
            // No copy to mark: it was dropped (evicted, removed) before this change began.
            guard let entry else { throw FileSystemError(EIO, "the cached copy is gone") }
            guard changed else { return entry.generation }
            do {
                try persist(entry)
            } catch {
                // Not recorded, so not dirty: the next change tries to record it again.
                _ = update(fid) { e in
                    e.dirty = false
                    e.path = nil
                }
                throw error
            }
            return entry.generation
        }
    }

    /// A change marked with `markDirty` (which returned `generation`) did not reach the copy,
    /// and the copy was clean before: it is clean again, unless another change was marked since
    /// (its bytes may be in the copy now).
    func undoDirtyMark(_ fid: FID, generation: UInt64) {
        persistLock.withLock {
            guard entries.withLockedValue({ $0[fid]?.generation }) == generation,
                  let entry = update(fid, { e in
                      e.dirty = false
                      e.path = nil
                  }) else { return }
            persistLater(fid, .put(entry))
        }
    }

    /// Moves a dirty copy the server refused (it changed meanwhile) to the conflicts folder,
    /// and forgets it here.
    func setAside(_ fid: FID) throws -> Conflict? {
        guard let entry = entry(fid), entry.dirty else { return nil }
        let conflict = try conflicts.keep(path(fid, entry.dataVersion), fid: fid, baseVersion: entry.dataVersion,
                                          size: entry.size, path: entry.path)
        remove(fid)
        return conflict
    }

    /// After a store of the copy as it was at `storedGeneration`: the local file is now
    /// `newVersion` on the server, and clean unless it changed since.
    func markStored(_ fid: FID, newVersion: UInt64, size: UInt64, storedGeneration: UInt64) throws {
        try persistLock.withLock {
            let entry = update(fid) { e in
                if e.dataVersion != newVersion {
                    // Under the lock, with the entry: no one sees the one without the other.
                    Glibc.rename(path(fid, e.dataVersion), path(fid, newVersion))
                    e.dataVersion = newVersion
                }
                if e.generation == storedGeneration {
                    e.dirty = false
                    e.size = size
                    e.path = nil
                }
            }
            // Still dirty (written during the store): under its new name, at once.
            if let entry { if entry.dirty { try persist(entry) } else { persistLater(fid, .put(entry)) } }
        }
    }

    func remove(_ fid: FID) {
        persistLock.withLock {
            guard let old = replace(fid, with: nil) else { return }
            spares.retire(path(fid, old.dataVersion))
            persistLater(fid, .delete)
        }
    }

    func setSizeLimit(_ bytes: UInt64) { limit.withLockedValue { $0 = bytes } }

    /// Evicts least recently used entries until the cache fits, skipping dirty ones and those
    /// `isBusy` names (open files). Returns how many were evicted.
    func evict(reserving extra: UInt64 = 0, isBusy: (FID) -> Bool) -> Int {
        // The common case, with no sort: it fits.
        let sizeLimit = self.sizeLimit
        guard totalBytes + extra > sizeLimit else { return 0 }
        var evicted = 0
        let candidates = entries.withLockedValue { $0.values.sorted { $0.lastUse < $1.lastUse } }
        var total = candidates.reduce(0) { $0 + $1.size } + extra
        for candidate in candidates where total > sizeLimit {
            guard !candidate.dirty, !isBusy(candidate.fid), removeIfClean(candidate.fid) else { continue }
            total -= candidate.size
            evicted += 1
        }
        return evicted
    }

    /// Removes the copy unless it is dirty now: a copy's first change marks it dirty under the
    /// same lock, so a copy checked clean a moment ago (an eviction's candidate, a removed file)
    /// is never dropped once a change has begun. Returns whether it was removed.
    @discardableResult
    func removeIfClean(_ fid: FID) -> Bool {
        persistLock.withLock {
            guard let current = entries.withLockedValue({ $0[fid] }), !current.dirty,
                  let old = replace(fid, with: nil) else { return false }
            spares.retire(path(fid, old.dataVersion))
            persistLater(fid, .delete)
            return true
        }
    }

    var dirtyEntries: [Entry] {
        entries.withLockedValue { $0.values.filter(\.dirty) }
    }

    /// Writes `entry` now (a dirty mark: it must be in the index before the file changes).
    /// Called with `persistLock` held. A failure is the caller's: crash recovery depends on it.
    private func persist(_ entry: Entry) throws {
        pending[entry.fid] = nil
        do {
            try index.write { db in try Self.write(db, .put(entry), for: entry.fid) }
        } catch {
            throw FileSystemError(EIO, "recording a dirty copy in the cache index: \(error)")
        }
    }

    /// Queues a write that leaves the entry clean or gone. Called with `persistLock` held. The
    /// batch is written 20 ms later: one wake-up of the writer thread for every file a burst of
    /// creates and stores touched, not one per file.
    private func persistLater(_ fid: FID, _ write: PendingWrite) {
        pending[fid] = write
        guard !flushScheduled else { return }
        flushScheduled = true
        indexWriter.asyncAfter(deadline: .now() + .milliseconds(20)) { [self] in flushIndex() }
    }

    /// Writes every pending entry in one transaction.
    func flushIndex() {
        persistLock.withLock {
            flushScheduled = false
            guard !pending.isEmpty else { return }
            let batch = pending
            pending = [:]
            // Best effort: these entries end clean or gone, and an index that lags behind them
            // is what start-up already handles (a name without its file, or a file without its
            // name, is dropped and refetched; the version in each name keeps a stale copy out).
            try? index.write { db in
                for (fid, write) in batch { try Self.write(db, write, for: fid) }
            }
        }
    }

    private static func write(_ db: Database, _ write: PendingWrite, for fid: FID) throws {
        switch write {
        case .put(let entry):
            // From the statement cache: this runs for every file written.
            try db.cachedStatement(sql: """
                INSERT OR REPLACE INTO cacheEntry (vnode, uniquifier, dataVersion, size, dirty, path) VALUES (?, ?, ?, ?, ?, ?)
                """).execute(arguments: [Int64(entry.fid.vnode), Int64(entry.fid.unique), Int64(entry.dataVersion),
                                         Int64(entry.size), entry.dirty ? 1 : 0, entry.path])
        case .delete:
            try db.cachedStatement(sql: "DELETE FROM cacheEntry WHERE vnode = ? AND uniquifier = ?")
                .execute(arguments: [Int64(fid.vnode), Int64(fid.unique)])
        }
    }
}
