import Dispatch

/// Runs certificate checks (X509's `Verifier` is async) on a queue of their own, not Swift's
/// shared cooperative pool: a process whose pool threads are all blocked (an in-process test,
/// an embedding program) must still finish TLS handshakes.
final class VerificationExecutor: TaskExecutor, @unchecked Sendable {
    static let shared = VerificationExecutor()

    private let queue = DispatchQueue(label: "peach.tls.verification")

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        queue.async { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
