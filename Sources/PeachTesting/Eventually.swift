import Foundation

/// Polls `condition` until it holds or `seconds` pass; returns whether it held.
///
/// For what another process does after the step a test waits on (a server noticing a closed
/// connection, a mount dropping a copy after a break): a fixed sleep is a guess that a loaded CI
/// machine proves wrong. The deadline is generous because a passing run never waits for it.
public func eventually(within seconds: Double = 20, every interval: Double = 0.05,
                       _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while true {
        if try condition() { return true }
        if Date() >= deadline { return false }
        usleep(UInt32(interval * 1_000_000))
    }
}
