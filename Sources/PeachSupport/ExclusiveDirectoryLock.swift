#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// An flock(2) on DIR/lock, held by one process at a time: two cache managers on one cache
/// directory, or two servers on one root, would corrupt each other's state.
public enum ExclusiveDirectoryLock {
    public struct Busy: Error, CustomStringConvertible {
        public var description: String
        public init(description: String) { self.description = description }
    }

    /// A held lock, released by `release()` (or when the process ends).
    public final class Held: Sendable {
        private let fd: Int32
        private let released = Atomic(false)

        init(fd: Int32) { self.fd = fd }

        public func release() {
            if !released.exchange(true, ordering: .relaxed) { close(fd) }
        }

        deinit { release() }
    }

    /// Takes the lock, or throws `Busy`.
    public static func acquire(_ directory: String, what: String) throws -> Held {
        let fd = open(directory + "/lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw Busy(description: "cannot open \(directory)/lock: \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw Busy(description: "the \(what) \(directory) is in use by another peach process")
        }
        return Held(fd: fd)
    }
}
