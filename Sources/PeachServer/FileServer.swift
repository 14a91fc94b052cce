import Foundation
import Logging
import NIOCore
import NIOPosix
import PeachProtocol
import PeachSecurity

/// What every connection of one server shares.
struct FileServerContext: Sendable {
    let store: VolumeStore
    let processor: RequestProcessor
    let registry: ClientRegistry
    let statistics: ServerStatistics
    let breakDelivery: BreakDelivery
    /// Principals served without new promises for a while (`PromiseSuspensions`).
    let suspensions: PromiseSuspensions
    /// SQLite work: every VolumeStore call.
    let threadPool: NIOThreadPool
    /// File reads, writes, opens and fsyncs, apart from SQLite's so neither waits on the other.
    let fileIO: NIOThreadPool
    let limits: ConnectionLimits
    let identityPolicy: IdentityPolicy
    let eventLoopGroup: EventLoopGroup
    let logger: Logger
    /// How long a client trusts its callbacks after last hearing from the server: half the
    /// break timeout (sent in every HelloReply).
    let lease: TimeAmount
    let startedAt = Date()
    /// A restored volume's first run: until then no change is answered (`graceAfterRestore`).
    let graceEnds: NIODeadline?
}

/// The PeachFS file server: a TCP listener in front of a `VolumeStore`.
public final class FileServer: Sendable {
    public let store: VolumeStore
    public let statistics = ServerStatistics()
    private let group: MultiThreadedEventLoopGroup
    private let threadPool: NIOThreadPool
    private let fileIO: NIOThreadPool
    private let context: FileServerContext
    private let channelBox = NIOLockedValueBoxChannel()
    private let frameBudget: InboundMemoryBudget
    private let connectionCount = NIOLockedValueBox(0)
    private let trimmer: MemoryTrimmer
    /// Every 100 ms, the commits that did not wait for the disk are synced (`--sync`).
    private let backgroundSync = NIOLockedValueBox<RepeatedTask?>(nil)
    private let clientSweep = NIOLockedValueBox<RepeatedTask?>(nil)
    /// Mutual TLS on every connection, or nil for plain TCP (loopback only, or `--insecure`).
    private let tls: ServerTLS?

    /// - Parameter callBackTimeout: how long a mutation waits for a break's acknowledgement before
    ///   the client holding the promise is declared unreachable.
    /// - Parameter limits: what one connection may make the server hold (see `ConnectionLimits`).
    public init(store: VolumeStore, callBackTimeout: TimeAmount = .seconds(10), limits: ConnectionLimits = ConnectionLimits(),
                tls: ServerTLS? = nil, identityPolicy: IdentityPolicy = IdentityPolicy(),
                logger: Logger = .noticesOnly("peach.server")) {
        self.store = store
        self.tls = tls
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        threadPool = NIOThreadPool(numberOfThreads: 8)
        threadPool.start()
        fileIO = NIOThreadPool(numberOfThreads: 4)
        fileIO.start()
        frameBudget = InboundMemoryBudget(limit: limits.maximumLargeFrameBytes)
        let lease = TimeAmount.nanoseconds(callBackTimeout.nanoseconds / 2)
        trimmer = MemoryTrimmer(pool: fileIO)
        let registry = ClientRegistry()
        let suspensions = PromiseSuspensions(period: limits.promiseSuspension)
        context = FileServerContext(
            store: store, processor: RequestProcessor(store: store), registry: registry, statistics: statistics,
            breakDelivery: BreakDelivery(registry: registry, store: store, statistics: statistics, timeout: callBackTimeout,
                                         lease: lease, threadPool: threadPool, suspensions: suspensions, logger: logger),
            suspensions: suspensions, threadPool: threadPool, fileIO: fileIO, limits: limits, identityPolicy: identityPolicy, eventLoopGroup: group,
            logger: logger, lease: lease, graceEnds: store.startedAfterRestore ? .now() + lease : nil)
    }

    /// Starts listening; returns the bound port (useful with port 0).
    @discardableResult
    public func start(host: String, port: Int) throws -> Int {
        let context = self.context
        let limits = context.limits
        let budget = frameBudget
        let connectionCount = self.connectionCount
        let queued = limits.maximumQueuedReplyBytes
        let tls = self.tls
        let trimmer = self.trimmer
        let channel = try ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: queued / 2, high: queued))
            // One read per event: a connection told to wait stops within one chunk (64 KiB).
            .childChannelOption(.maxMessagesPerRead, value: 1)
            .childChannelInitializer { channel in
                let admitted = connectionCount.withLockedValue { count in
                    guard count < limits.maximumClients else { return false }
                    count += 1
                    return true
                }
                guard admitted else {
                    context.logger.warning("refusing connection: --max-clients reached",
                                           metadata: ["peer": "\(channel.remoteAddress.map { "\($0)" } ?? "-")",
                                                      "limit": "\(limits.maximumClients)"])
                    return channel.close()
                }
                channel.closeFuture.whenComplete { _ in
                    connectionCount.withLockedValue { $0 -= 1 }
                    trimmer.connectionClosed()
                }
                return channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(ByteCounter(received: context.store.metrics.receivedBytes, sent: context.store.metrics.sentBytes))
                    if let tls {
                        let peer = channel.remoteAddress.map { "\($0)" } ?? "-"
                        let logger = context.logger
                        try sync.addHandler(tls.makeHandler { subject, reason in
                            logger.notice("refused client certificate", metadata: ["peer": "\(peer)", "subject": "\(subject)",
                                                                               "reason": "\(reason)"])
                        })
                    }
                    let owner = FrameOwner()
                    try sync.addHandler(ByteToMessageHandler(ServerFrameDecoder(budget: budget, owner: owner,
                                                                                partialFrameTimeout: limits.partialFrameTimeout)))
                    try sync.addHandler(MessageToByteHandler(FrameEncoder()))
                    try sync.addHandler(IdleStateHandler(readTimeout: limits.idleTimeout))
                    try sync.addHandler(ConnectionHandler(server: context, frameOwner: owner))
                }
            }
            .bind(host: host, port: port).wait()
        channelBox.set(channel)
        let (store, fileIO) = (self.store, self.fileIO)
        backgroundSync.withLockedValue {
            $0 = group.next().scheduleRepeatedTask(initialDelay: .milliseconds(100), delay: .milliseconds(100)) { _ in
                fileIO.submit { _ in store.syncPendingCommits() }
            }
        }
        let (threadPool, registry, logger) = (self.threadPool, context.registry, context.logger)
        let retention = context.limits.forgetClientsAfter
        let sweepEvery = TimeAmount.nanoseconds(min(retention.nanoseconds / 4, TimeAmount.hours(1).nanoseconds))
        clientSweep.withLockedValue {
            $0 = group.next().scheduleRepeatedTask(initialDelay: .seconds(1), delay: sweepEvery) { _ in
                threadPool.submit { state in
                    guard state == .active else { return }
                    let cutoff = Timespec.now().seconds - retention.nanoseconds / 1_000_000_000
                    do {
                        let forgotten = try store.forgetClients(silentSince: cutoff, except: Set(registry.connectedClients().keys))
                        if forgotten > 0 { logger.info("forgot clients away since before the retention", metadata: ["clients": "\(forgotten)"]) }
                    } catch {
                        logger.warning("could not forget old clients", metadata: ["error": "\(error)"])
                    }
                }
            }
        }
        return channel.localAddress?.port ?? port
    }

    /// Stops listening, closes every connection and waits for the thread pool to finish.
    public func stop() {
        try? channelBox.take()?.close().wait()
        backgroundSync.withLockedValue { $0?.cancel(); $0 = nil }
        clientSweep.withLockedValue { $0?.cancel(); $0 = nil }
        // The pools first, while every event loop still runs: work that finishes during the
        // shutdown hops back to a live loop (and may push a break to another connection's loop);
        // work not started yet is cancelled and fails its future. Then the loops and connections.
        try? threadPool.syncShutdownGracefully()
        try? fileIO.syncShutdownGracefully()
        try? group.syncShutdownGracefully()
        store.releaseRoot()
    }

    public func callBackCount() throws -> Int { try store.callBackCount() }

    /// Connections open now.
    public var connectedClients: Int { connectionCount.withLockedValue { $0 } }

    /// Sets the metrics read from state (`peach server --metrics` runs it before each scrape).
    public func refreshMetrics() {
        store.metrics.refresh(statistics: statistics.snapshot(), store: store, connectedClients: connectedClients)
    }
}

import NIOConcurrencyHelpers

/// The listening channel, set once `start` binds.
final class NIOLockedValueBoxChannel: Sendable {
    private let box = NIOLockedValueBox<Channel?>(nil)
    func set(_ channel: Channel) { box.withLockedValue { $0 = channel } }
    func take() -> Channel? { box.withLockedValue { let c = $0; $0 = nil; return c } }
}
