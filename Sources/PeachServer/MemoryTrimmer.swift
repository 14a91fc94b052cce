import CPeachSystem
import Dispatch
import Glibc
import NIOConcurrencyHelpers
import NIOPosix

/// Gives freed memory back to the system after connections close. glibc keeps what a thousand
/// closed connections' buffers used in its arenas; `malloc_trim` returns it. At most once a
/// second, a second after a close, on the file I/O pool: neither an event loop nor a burst of
/// closes pays for it, and no pool thread waits for the second to pass. The wait is Dispatch's,
/// not an event loop's: connections also close while the server shuts its event loops down.
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
        let (pool, scheduled) = (self.pool, self.scheduled)
        DispatchQueue.global().asyncAfter(deadline: .now() + 1) {
            scheduled.withLockedValue { $0 = false }
            pool.submit { state in
                if case .active = state { malloc_trim(0) }
            }
        }
    }
}
