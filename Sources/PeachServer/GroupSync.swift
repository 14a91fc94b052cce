import Foundation
import Metrics

/// Group commit for SQLite's write-ahead log: commits run with `synchronous = NORMAL` (no fsync
/// of their own), and a request whose reply must wait for the disk calls `sync()`, which returns
/// once an fsync of the log (and of the data directory, if a version file was named in it since
/// the last one) that began after the call has finished.
/// Concurrent callers share one fsync: while one runs, the next callers wait and the first of them
/// runs the next one for all. Blocks the calling thread (a database pool thread, never an event loop).
final class GroupSync: @unchecked Sendable {
    private let directoryFD: Int32
    private let logFD: Int32
    /// Each group fsync's duration (`peach_server_fsync_duration_seconds`).
    private let duration: Timer
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var requested: UInt64 = 0
    private var completed: UInt64 = 0
    private var syncing = false
    private var started: UInt64 = 0
    private var directorySyncs: UInt64 = 0
    /// A version file was named or renamed in the data directory since the last round began.
    /// A store of a small file (inline) names none: its rounds fsync the log only.
    private var directoryChanged = true

    /// fsyncs begun so far (for tests and statistics).
    var fsyncsStarted: UInt64 {
        condition.lock()
        defer { condition.unlock() }
        return started
    }

    /// Rounds that fsynced the data directory too (for tests).
    var directoryFsyncs: UInt64 {
        condition.lock()
        defer { condition.unlock() }
        return directorySyncs
    }

    /// - Parameters:
    ///   - directory: the data directory (stores rename version files into it);
    ///   - log: the database's -wal file.
    init(directory: String, log: String, duration: Timer) throws {
        self.duration = duration
        directoryFD = open(directory, O_RDONLY | O_CLOEXEC)
        guard directoryFD >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        logFD = open(log, O_RDONLY | O_CLOEXEC)
        guard logFD >= 0 else {
            let error = POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
            close(directoryFD)
            throw error
        }
    }

    deinit {
        close(directoryFD)
        close(logFD)
    }

    /// A version file was just named in the data directory: the next round fsyncs it.
    func noteDirectoryChange() {
        condition.lock()
        directoryChanged = true
        condition.unlock()
    }

    /// Commits made since the last `sync` are waiting for one (the delayed syncer's test).
    var hasPending: Bool {
        condition.lock()
        defer { condition.unlock() }
        return requested > completed || unsyncedCommits
    }

    /// Set by a commit that did not wait: the next background round syncs it.
    private var unsyncedCommits = false

    func noteUnsyncedCommit() {
        condition.lock()
        unsyncedCommits = true
        condition.unlock()
    }

    /// Returns once everything committed before the call is on disk; throws on an fsync failure.
    func sync() throws {
        condition.lock()
        defer { condition.unlock() }
        requested += 1
        let ticket = requested
        while completed < ticket {
            if syncing {
                condition.wait()
                continue
            }
            syncing = true
            started += 1
            unsyncedCommits = false
            // A change noted before this point is covered by this round; one noted after, by the next.
            let syncDirectory = directoryChanged
            directoryChanged = false
            if syncDirectory { directorySyncs += 1 }
            let (from, covers) = (completed + 1, requested)
            condition.unlock()
            let failed = ServerMetrics.time(duration) {
                (syncDirectory && fsync(directoryFD) != 0) || fsync(logFD) != 0
            }
            condition.lock()
            syncing = false
            completed = covers
            if failed {
                lastFailure = from...covers
                if syncDirectory { directoryChanged = true }
            }
            condition.broadcast()
        }
        if let lastFailure, lastFailure.contains(ticket) { throw POSIXError(.EIO) }
    }

    /// The tickets of the last fsync that failed.
    private var lastFailure: ClosedRange<UInt64>?
}
