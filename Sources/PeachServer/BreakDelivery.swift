import Logging
import NIOCore
import NIOPosix
import PeachProtocol

/// Sends callback breaks to the clients that held them, one batch per client, and completes when
/// each acknowledged or was declared unreachable (not connected, or no ack within the timeout).
/// An unreachable client loses all its promises and is told so (InitCallBackState now if it is
/// still connected, `callBacksLost` in its next Hello otherwise).
struct BreakDelivery: Sendable {
    let registry: ClientRegistry
    let store: VolumeStore
    let statistics: ServerStatistics
    let timeout: TimeAmount
    let threadPool: NIOThreadPool
    let logger: Logger

    func deliver(_ breaks: [String: [FID]], reason: CallBackReason, on eventLoop: EventLoop) -> EventLoopFuture<Void> {
        guard !breaks.isEmpty else { return eventLoop.makeSucceededVoidFuture() }
        let deliveries = breaks.map { client, fids in deliver(fids, to: client, reason: reason, on: eventLoop) }
        return EventLoopFuture.andAllComplete(deliveries, on: eventLoop)
    }

    private func deliver(_ fids: [FID], to client: String, reason: CallBackReason, on eventLoop: EventLoop) -> EventLoopFuture<Void> {
        statistics.countBreaks(fids: fids.count)
        guard let connection = registry.connection(for: client) else {
            return declareUnreachable(client, connection: nil, on: eventLoop)
        }
        let timeout = self.timeout
        return connection.eventLoop.flatSubmit {
            connection.value.push(.callBack(fids, reason: reason), timeout: timeout)
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

