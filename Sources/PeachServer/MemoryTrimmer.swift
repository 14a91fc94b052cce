import CPeachSystem
import Glibc
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Gives freed memory back to the system after connections close. glibc keeps what a thousand
/// closed connections' buffers used in its arenas; `malloc_trim` returns it. At most once a
/// second, a second after a close, on the file I/O pool: neither an event loop nor a burst of
/// closes pays for it, and no pool thread waits for the second to pass.
final class MemoryTrimmer: Sendable {
    private let pool: NIOThreadPool
    private let timer: EventLoop
    private let scheduled = NIOLockedValueBox(false)

    init(pool: NIOThreadPool, timer: EventLoop) {
        self.pool = pool
        self.timer = timer
    }

    func connectionClosed() {
        let start = scheduled.withLockedValue { pending -> Bool in
            defer { pending = true }
            return !pending
        }
        guard start else { return }
        let (pool, scheduled) = (self.pool, self.scheduled)
        timer.scheduleTask(in: .seconds(1)) {
            scheduled.withLockedValue { $0 = false }
            pool.submit { _ in malloc_trim(0) }
        }
    }
}
