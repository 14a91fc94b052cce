import Foundation
import Metrics

/// Group commit for SQLite's write-ahead log: commits run with `synchronous = NORMAL` (no fsync
/// of their own), and a request whose reply must wait for the disk calls `sync()`, which returns
/// once an fsync of the log (and of the data directory) that began after the call has finished.
/// Concurrent callers share one fsync: while one runs, the next callers wait and the first of them
/// runs the next one for all. Blocks the calling thread (a database pool thread, never an event loop).
final class GroupSync: @unchecked Sendable {
    private let fds: [Int32]
    /// Each group fsync's duration (`peach_server_fsync_duration_seconds`).
    private let duration: Timer
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var requested: UInt64 = 0
    private var completed: UInt64 = 0
    private var syncing = false
    private var started: UInt64 = 0

    /// fsyncs begun so far (for tests and statistics).
    var fsyncsStarted: UInt64 {
        condition.lock()
        defer { condition.unlock() }
        return started
    }

    /// - Parameter paths: what to fsync, in order: the data directory (stores rename files into
    ///   it), then the database's -wal file.
    init(paths: [String], duration: Timer) throws {
        self.duration = duration
        var opened: [Int32] = []
        for path in paths {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else {
                let error = POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
                opened.forEach { close($0) }
                throw error
            }
            opened.append(fd)
        }
        fds = opened
    }

    deinit { fds.forEach { close($0) } }

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
            let (from, covers) = (completed + 1, requested)
            condition.unlock()
            let failed = ServerMetrics.time(duration) { fds.contains { fsync($0) != 0 } }
            condition.lock()
            syncing = false
            completed = covers
            if failed { lastFailure = from...covers }
            condition.broadcast()
        }
        if let lastFailure, lastFailure.contains(ticket) { throw POSIXError(.EIO) }
    }

    /// The tickets of the last fsync that failed.
    private var lastFailure: ClosedRange<UInt64>?
}
