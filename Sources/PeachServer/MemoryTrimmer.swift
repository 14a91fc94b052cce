import CPeachSystem
import Glibc
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Gives freed memory back to the system after connections close. glibc keeps what a thousand
/// closed connections' buffers used in its arenas; `malloc_trim` returns it. Run on the file I/O
/// pool, at most once a second, so neither an event loop nor a burst of closes pays for it.
final class MemoryTrimmer: Sendable {
    private let pool: NIOThreadPool
    private let scheduled = NIOLockedValueBox(false)

    init(pool: NIOThreadPool) { self.pool = pool }

    func connectionClosed() {
        let start = scheduled.withLockedValue { pending -> Bool in
            defer { pending = true }
            return !pending
        }
        guard start else { return }
        let scheduled = self.scheduled
        pool.submit { _ in
            sleep(1)
            scheduled.withLockedValue { $0 = false }
            malloc_trim(0)
        }
    }
}
