import Dispatch
import NIOConcurrencyHelpers

/// `peach fs storebehind` (OpenAFS's `fs storebehind`), off by default: a close(2) returns once
/// the data is in the cache, and the store follows from a queue of its own, one file at a time.
/// What it gives up (docs/consistency.md): a failed store is logged, not returned by close, and
/// other clients see the new content only once the store lands. `fsync(2)`, `peach fs sync` and
/// unmount still wait for every store.
final class StoreBehind: Sendable {
    private struct State {
        var enabled: Bool
        /// Files waiting for their store, by inode (a file closed twice before its store runs is
        /// stored once).
        var queued: Set<UInt64> = []
        /// Stores queued or running.
        var unfinished = 0
        var stopped = false
    }

    private let state: NIOLockedValueBox<State>
    private let queue = DispatchQueue(label: "peach.afs.store-behind")

    init(enabled: Bool) {
        state = NIOLockedValueBox(State(enabled: enabled))
    }

    var isEnabled: Bool { state.withLockedValue { $0.enabled } }

    func set(enabled: Bool) { state.withLockedValue { $0.enabled = enabled } }

    /// Stores queued or running.
    var pendingCount: Int { state.withLockedValue { $0.unfinished } }

    /// Queues `store` for `inode` unless one is queued already; false when store-behind is off
    /// (the caller stores now).
    func enqueue(_ inode: UInt64, store: @escaping @Sendable () -> Void) -> Bool {
        let queued = state.withLockedValue { s -> Bool? in
            guard s.enabled, !s.stopped else { return nil }
            let inserted = s.queued.insert(inode).inserted
            if inserted { s.unfinished += 1 }
            return inserted
        }
        guard let queued else { return false }
        if queued {
            queue.async { [state] in
                // Taken off before the store: a close during it queues the next one.
                let run = state.withLockedValue { s -> Bool in
                    s.queued.remove(inode)
                    return !s.stopped
                }
                if run { store() }
                state.withLockedValue { $0.unfinished -= 1 }
            }
        }
        return true
    }

    /// At unmount: no store starts from here (the unmount stores every dirty file itself, within
    /// its grace; a store running now fails with the connection's shutdown).
    func stop() {
        state.withLockedValue { $0.stopped = true }
    }
}
