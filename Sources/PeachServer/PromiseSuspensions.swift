import NIOConcurrencyHelpers
import NIOCore

/// Principals that get no new promises for a while, because one of their clients made a change
/// wait: it was away, or silent, while holding a promise the change broke. A change waits for
/// such a client until its lease runs out (it may still trust the promise), and a local user can
/// make up client ids that take a promise and vanish. After one such wait the principal's
/// clients are served without promises (as NFS-mode clients are: correct, revalidating at each
/// open) for `ConnectionLimits.promiseSuspension`, so one principal can make others wait about
/// one lease per period at most. Root on the server's machine is exempt: it could stop the
/// server anyway, and every test mount of one machine is root.
final class PromiseSuspensions: Sendable {
    private let until = NIOLockedValueBox([String: NIODeadline]())
    let period: TimeAmount

    init(period: TimeAmount) { self.period = period }

    /// `ownerKey` made a change wait: no new promises for it for one period from now.
    func suspend(_ ownerKey: String) {
        guard ownerKey != Principal.localRoot.ownerKey, period > .zero else { return }
        let ends = NIODeadline.now() + period
        until.withLockedValue { table in
            table[ownerKey] = ends
            // Expired entries go whenever one is added: the table holds at most one entry per
            // principal that struck within a period.
            table = table.filter { $0.value > .now() }
        }
    }

    /// (`ownerKey` is only made when some principal is suspended: this runs for every request.)
    func isSuspended(_ ownerKey: @autoclosure () -> String) -> Bool {
        until.withLockedValue { table in
            guard !table.isEmpty else { return false }
            let ownerKey = ownerKey()
            guard let ends = table[ownerKey] else { return false }
            if ends > .now() { return true }
            table[ownerKey] = nil
            return false
        }
    }
}
