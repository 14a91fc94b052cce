import NIOConcurrencyHelpers
import NIOCore

/// Bytes of large frames being received, shared by every connection of one server.
///
/// A peer that sends the header of a 1 MiB frame and then trickles its body makes the server
/// buffer it. Small frames are bounded by the number of connections; large ones take a share
/// of this budget first, and a connection that finds it spent stops being read (its bytes wait
/// in the kernel) until another large frame completes.
final class InboundMemoryBudget: Sendable {
    /// Frames up to this size need no share of the budget.
    static let smallFrameSize = 64 << 10

    private struct State {
        var used = 0
        var waiters: [@Sendable () -> Void] = []
    }

    let limit: Int
    private let state = NIOLockedValueBox(State())

    init(limit: Int) { self.limit = limit }

    /// Takes `bytes` if they fit; `false` otherwise (the caller asks to be woken with `whenAvailable`).
    func reserve(_ bytes: Int) -> Bool {
        state.withLockedValue { state in
            guard state.used + bytes <= limit || state.used == 0 else { return false }
            state.used += bytes
            return true
        }
    }

    /// Gives `bytes` back and wakes the connection that has waited longest. One, not all: a
    /// thousand connections woken at once would each read a chunk before finding the budget
    /// spent again. The woken one passes the turn on (`wakeNext`) if it no longer needs it.
    func release(_ bytes: Int) {
        state.withLockedValue { $0.used -= bytes }
        wakeNext()
    }

    func wakeNext() {
        let next = state.withLockedValue { state in state.waiters.isEmpty ? nil : state.waiters.removeFirst() }
        next?()
    }

    /// Calls `wake` once, after a release (at once if nothing is reserved).
    func whenAvailable(_ wake: @escaping @Sendable () -> Void) {
        let now = state.withLockedValue { state in
            if state.used == 0 { return true }
            state.waiters.append(wake)
            return false
        }
        if now { wake() }
    }

    var used: Int { state.withLockedValue { $0.used } }
}

/// A share of the budget held by one frame being received; given back when the frame is
/// complete or when the connection (and with it the decoder) goes away.
final class FrameReservation {
    private let budget: InboundMemoryBudget
    private(set) var bytes = 0

    init(budget: InboundMemoryBudget) { self.budget = budget }

    func take(_ bytes: Int) -> Bool {
        guard budget.reserve(bytes) else { return false }
        self.bytes = bytes
        return true
    }

    func giveBack() {
        guard bytes > 0 else { return }
        budget.release(bytes)
        bytes = 0
    }

    deinit { giveBack() }
}
