import Logging
import NIOCore
import NIOPosix
import PeachProtocol

/// Sends callback breaks to the clients that held them, one batch per client, and completes when
/// each acknowledged or was declared unreachable: no ack within the timeout, or silent for a
/// lease (counted from the server's last contact, connected or not). A client trusts its
/// callbacks only within a lease of hearing from the server, so once it has been silent that
/// long it serves nothing from them (docs/consistency.md). An unreachable client loses all its
/// promises and is told so (InitCallBackState now if it is still connected, `callBacksLost` in
/// its next Hello otherwise).
struct BreakDelivery: Sendable {
    let registry: ClientRegistry
    let store: VolumeStore
    let statistics: ServerStatistics
    let timeout: TimeAmount
    let lease: TimeAmount
    let threadPool: NIOThreadPool
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

    private func deliver(_ fids: [FID], to client: String, reason: CallBackReason, on eventLoop: EventLoop) -> EventLoopFuture<Void> {
        statistics.countBreaks(fids: fids.count)
        guard let connection = registry.connection(for: client) else {
            // Not connected: it may still trust its callbacks until its lease runs out.
            let remaining = registry.lastContact(of: client) + lease - .now()
            guard remaining > .zero else { return declareUnreachable(client, connection: nil, on: eventLoop) }
            return eventLoop.scheduleTask(in: remaining) {}.futureResult.flatMap {
                declareUnreachable(client, connection: nil, on: eventLoop)
            }
        }
        let (timeout, lease, registry) = (self.timeout, self.lease, self.registry)
        let pushed = NIODeadline.now()
        return connection.eventLoop.flatSubmit {
            connection.value.push(.callBack(fids, reason: reason), timeout: timeout, lease: lease)
        }.map {
            registry.recordBreak(to: client, nanoseconds: (NIODeadline.now() - pushed).nanoseconds)
        }.hop(to: eventLoop).flatMapError { _ in
            declareUnreachable(client, connection: connection, on: eventLoop)
        }
    }

    private func declareUnreachable(_ client: String, connection: NIOLoopBound<ConnectionHandler>?,
                                    on eventLoop: EventLoop) -> EventLoopFuture<Void> {
        statistics.countUnreachable()
        logger.notice("client declared unreachable; its callbacks are dropped", metadata: ["client": "\(client)"])
        if let connection {
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

