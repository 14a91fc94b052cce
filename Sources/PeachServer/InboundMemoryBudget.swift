import NIOConcurrencyHelpers
import NIOCore

/// Bytes of large frames being received, shared by every connection of one server.
///
/// A peer that sends the header of a 1 MiB frame and then trickles its body makes the server
/// buffer it. Small frames are bounded by the number of connections; large ones take a share
/// of this budget first, and a connection that finds it spent stops being read (its bytes wait
/// in the kernel) until another large frame completes.
///
/// One principal (a client machine, a local user) may hold at most half of it, and connections
/// not yet identified (no Hello, no certificate) together an eighth: 130 stalled 1 MiB frames
/// from one local user made another client's 4 MiB store wait 22 s, and now leave the others
/// half the budget.
final class InboundMemoryBudget: Sendable {
    /// Frames up to this size need no share of the budget.
    static let smallFrameSize = 64 << 10
    /// The owner key of connections whose principal is not known yet.
    static let unidentified = ""

    private struct State {
        var used = 0
        var usedBy: [String: Int] = [:]
        var waiters: [(owner: String, wake: @Sendable () -> Void)] = []
    }

    let limit: Int
    private let state = NIOLockedValueBox(State())

    init(limit: Int) { self.limit = limit }

    /// What one owner may hold.
    func share(of owner: String) -> Int {
        owner == Self.unidentified ? limit / 8 : limit / 2
    }

    /// Takes `bytes` for `owner` if they fit, in the whole budget and in the owner's share (an
    /// owner holding nothing may always take one frame); `false` otherwise (the caller asks to
    /// be woken with `whenAvailable`).
    func reserve(_ bytes: Int, owner: String) -> Bool {
        state.withLockedValue { state in
            let held = state.usedBy[owner, default: 0]
            guard state.used + bytes <= limit || state.used == 0 else { return false }
            guard held + bytes <= share(of: owner) || held == 0 else { return false }
            state.used += bytes
            state.usedBy[owner] = held + bytes
            return true
        }
    }

    /// Gives `bytes` back and wakes the connection that has waited longest among those whose
    /// owner is under its share. One, not all: a thousand connections woken at once would each
    /// read a chunk before finding the budget spent again. The woken one passes the turn on
    /// (`wakeNext`) if it no longer needs it.
    func release(_ bytes: Int, owner: String) {
        state.withLockedValue { state in
            state.used -= bytes
            let held = state.usedBy[owner, default: 0] - bytes
            state.usedBy[owner] = held > 0 ? held : nil
        }
        wakeNext()
    }

    func wakeNext() {
        let next = state.withLockedValue { state -> (@Sendable () -> Void)? in
            guard let index = state.waiters.firstIndex(where: { state.usedBy[$0.owner, default: 0] < share(of: $0.owner) }) else { return nil }
            return state.waiters.remove(at: index).wake
        }
        next?()
    }

    /// Calls `wake` once, after a release (at once if nothing is reserved).
    func whenAvailable(owner: String, _ wake: @escaping @Sendable () -> Void) {
        let now = state.withLockedValue { state in
            if state.used == 0 { return true }
            state.waiters.append((owner, wake))
            return false
        }
        if now { wake() }
    }

    var used: Int { state.withLockedValue { $0.used } }
}

/// Whose a connection's large frames are: its principal's owner key once known
/// (`ConnectionHandler` sets it at the TLS handshake or Hello), `unidentified` before.
final class FrameOwner: Sendable {
    private let key = NIOLockedValueBox(InboundMemoryBudget.unidentified)

    var current: String { key.withLockedValue { $0 } }

    func set(_ owner: String) { key.withLockedValue { $0 = owner } }
}

/// A share of the budget held by one frame being received; given back when the frame is
/// complete or when the connection (and with it the decoder) goes away.
final class FrameReservation {
    private let budget: InboundMemoryBudget
    private let owner: FrameOwner
    private(set) var bytes = 0
    /// The owner the bytes were taken for (the key may change at Hello meanwhile).
    private var takenFor = InboundMemoryBudget.unidentified

    init(budget: InboundMemoryBudget, owner: FrameOwner) {
        self.budget = budget
        self.owner = owner
    }

    func take(_ bytes: Int) -> Bool {
        let owner = self.owner.current
        guard budget.reserve(bytes, owner: owner) else { return false }
        self.bytes = bytes
        takenFor = owner
        return true
    }

    func giveBack() {
        guard bytes > 0 else { return }
        budget.release(bytes, owner: takenFor)
        bytes = 0
    }

    deinit { giveBack() }
}
