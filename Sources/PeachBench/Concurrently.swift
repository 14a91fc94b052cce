import Foundation
import PeachClient
import PeachLocalCluster

extension ServerProcess {
    /// User plus system CPU seconds the server has used so far.
    var cpuSeconds: Double { pid.map(processCPUSeconds) ?? 0 }
    var counters: ProcessCounters { pid.map(ProcessCounters.read) ?? ProcessCounters() }
}

/// Runs `body(i)` for i in 0..<count on threads of their own, all at once; rethrows the first error.
func concurrently(_ count: Int, _ body: @escaping @Sendable (Int) throws -> Void) throws {
    let errors = NSLock()
    nonisolated(unsafe) var firstError: Error?
    let group = DispatchGroup()
    for i in 0..<count {
        group.enter()
        let thread = Thread {
            defer { group.leave() }
            do { try body(i) } catch {
                errors.lock()
                if firstError == nil { firstError = error }
                errors.unlock()
            }
        }
        thread.stackSize = 1 << 20
        thread.start()
    }
    group.wait()
    if let firstError { throw firstError }
}
