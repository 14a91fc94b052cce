import Glibc

/// Version files an NFS WRITE changes in place, outside the database's writer (`shared`), and a
/// backup that links version files (`exclusive`): a backup starts only once no such write is in
/// progress, and the writes that start after it see `backupRunning` and copy instead of writing in
/// place. Lock order: this gate, then `WriterGate`.
final class FileWorkGate: @unchecked Sendable {
    private let lock: UnsafeMutablePointer<pthread_rwlock_t>

    init() {
        lock = .allocate(capacity: 1)
        pthread_rwlock_init(lock, nil)
    }

    deinit {
        pthread_rwlock_destroy(lock)
        lock.deallocate()
    }

    /// Runs `body` beside other writes in place.
    func shared<T>(_ body: () throws -> T) rethrows -> T {
        pthread_rwlock_rdlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }

    /// Runs `body` once no write in place is in progress, keeping new ones out until it returns.
    func exclusive<T>(_ body: () throws -> T) rethrows -> T {
        pthread_rwlock_wrlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }
}
