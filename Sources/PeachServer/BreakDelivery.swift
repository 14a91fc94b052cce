import Logging
import NIOCore
import NIOPosix
import PeachProtocol

/// Sends callback breaks to the clients that held them, one batch per client, and completes when
/// each acknowledged or was declared unreachable: no ack within the timeout, or silent for a
/// lease (counted from the server's last contact, connected or not). A client trusts its
/// callbacks only within a lease of hearing from the server, so once it has been silent that
/// long it serves nothing from them (docs/consistency.md). A client that is not connected is
/// waited for until its lease runs out; if it comes back first, the break is pushed to it then.
/// An unreachable client loses all its promises and is told so (InitCallBackState now if it is
/// connected, `callBacksLost` in its next Hello otherwise). An acknowledged break is settled in
/// the callback table after the fact (`CallBackTable.settle`); until then the client's next
/// Hello would be told its promises are lost, which is safe.
struct BreakDelivery: Sendable {
    let registry: ClientRegistry
    let store: VolumeStore
    let statistics: ServerStatistics
    let timeout: TimeAmount
    let lease: TimeAmount
    let threadPool: NIOThreadPool
    let suspensions: PromiseSuspensions
    let logger: Logger

    func deliver(_ breaks: [String: [FID]], reason: CallBackReason, on eventLoop: EventLoop) -> EventLoopFuture<Void> {
        guard !breaks.isEmpty else { return eventLoop.makeSucceededVoidFuture() }
        let started = NIODeadline.now()
        let deliveries = breaks.map { client, fids in deliver(fids, to: client, reason: reason, on: eventLoop) }
        let duration = store.metrics.breakDuration
        return EventLoopFuture.andAllComplete(deliveries, on: eventLoop).always { _ in
            duration.recordNanoseconds((NIODeadline.now() - started).nanoseconds)
        }
    }

    private func deliver(_ fids: [FID], to client: String, reason: CallBackReason, on eventLoop: EventLoop,
                         counted: Bool = false) -> EventLoopFuture<Void> {
        if !counted { statistics.countBreaks(fids: fids.count) }
        let returned = eventLoop.makePromise(of: Bool.self)
        let (found, waiter) = registry.connection(for: client, orWhenConnected: { returned.succeed(true) })
        guard let connection = found else {
            // Not connected: it may still trust its callbacks until its lease runs out, unless it
            // comes back first (then the break goes to it over its new connection).
            if registry.saidFarewell(client) {
                // It gave every promise up before leaving: nothing to wait for or to declare.
                // (Its waiter is taken back, or has just run: either way the promise completes.)
                if registry.cancelWaiting(client, id: waiter) { returned.succeed(false) }
                return eventLoop.makeSucceededVoidFuture()
            }
            let remaining = registry.lastContact(of: client) + lease - .now()
            if remaining > .zero {
                statistics.countWaitForAbsentClient()
                suspendPromises(ofOwnerOf: client)
            }
            let registry = self.registry
            let giveUp: @Sendable () -> Void = {
                if registry.cancelWaiting(client, id: waiter) { returned.succeed(false) }
            }
            // Also when the event loop shuts down first (the task is then cancelled): the
            // promise is never left unfulfilled.
            eventLoop.scheduleTask(in: max(remaining, .zero), giveUp).futureResult.whenFailure { _ in giveUp() }
            return returned.futureResult.flatMap { cameBack in
                cameBack ? redeliver(fids, to: client, reason: reason, on: eventLoop) : declareUnreachable(client, on: eventLoop)
            }
        }
        returned.succeed(true)  // no waiter was left behind
        let (timeout, lease, registry, store, threadPool) = (self.timeout, self.lease, self.registry, self.store, self.threadPool)
        let pushed = NIODeadline.now()
        let pushedTo = registry.connectionID(for: client)
        return connection.eventLoop.flatSubmit {
            connection.value.push(.callBack(fids, reason: reason), timeout: timeout, lease: lease)
        }.map {
            registry.recordBreak(to: client, nanoseconds: (NIODeadline.now() - pushed).nanoseconds)
            // After the fact: the change's reply does not wait for this write.
            threadPool.submit { _ in try? store.settleBreaks(client: client, fids: fids) }
        }.hop(to: eventLoop).flatMapError { _ in
            // Connected and silent past the timeout or its lease: unreachable. Its connection
            // closed instead: it may trust its promises until its lease ends, so wait for it.
            if let current = registry.connectionID(for: client), current == pushedTo {
                return declareUnreachable(client, on: eventLoop)
            }
            return redeliver(fids, to: client, reason: reason, on: eventLoop)
        }
    }

    /// The client came back (or its connection changed) before acknowledging: push the break
    /// again over its new connection, and complete once it acknowledges. Even when its Hello
    /// already told it that its promises are lost: the server answered that Hello, but the
    /// client may not have acted on the answer yet, and the change must not complete until the
    /// broken promise is gone from the client (a reader there would get the old copy).
    private func redeliver(_ fids: [FID], to client: String, reason: CallBackReason, on eventLoop: EventLoop) -> EventLoopFuture<Void> {
        deliver(fids, to: client, reason: reason, on: eventLoop, counted: true)
    }

    /// `client` makes this change wait: its principal gets no new promises for a while
    /// (`PromiseSuspensions`). Looked up off the event loop; the change waits anyway.
    private func suspendPromises(ofOwnerOf client: String) {
        let (store, suspensions, logger) = (self.store, self.suspensions, self.logger)
        threadPool.submit { _ in
            guard let owner = try? store.owner(ofClient: client), !suspensions.isSuspended(owner) else { return }
            suspensions.suspend(owner)
            if suspensions.isSuspended(owner) {
                logger.notice("a change waits for an absent client; its principal gets no new callbacks for a while",
                              metadata: ["client": "\(client)", "principal": "\(owner)", "seconds": "\(suspensions.period.nanoseconds / 1_000_000_000)"])
            }
        }
    }

    private func declareUnreachable(_ client: String, on eventLoop: EventLoop) -> EventLoopFuture<Void> {
        statistics.countUnreachable()
        suspendPromises(ofOwnerOf: client)
        logger.notice("client declared unreachable; its callbacks are dropped", metadata: ["client": "\(client)"])
        if let connection = registry.connection(for: client) {
            connection.eventLoop.execute {
                _ = connection.value.push(.initCallBackState, timeout: .seconds(3600))
            }
        }
        let store = self.store
        return threadPool.runIfActive(eventLoop: eventLoop) {
            try store.declareUnreachable(client: client)
        }.recover { _ in }
    }
}

