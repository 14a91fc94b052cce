import Logging
import NIOCore
import NIOPosix
import PeachProtocol

/// What every connection of one server shares.
struct FileServerContext: Sendable {
    let store: VolumeStore
    let processor: RequestProcessor
    let registry: ClientRegistry
    let statistics: ServerStatistics
    let breakDelivery: BreakDelivery
    let threadPool: NIOThreadPool
    let eventLoopGroup: EventLoopGroup
    let logger: Logger
}

/// The PeachFS file server: a TCP listener in front of a `VolumeStore`.
public final class FileServer: Sendable {
    public let store: VolumeStore
    public let statistics = ServerStatistics()
    private let group: MultiThreadedEventLoopGroup
    private let threadPool: NIOThreadPool
    private let context: FileServerContext
    private let channelBox = NIOLockedValueBoxChannel()

    /// - Parameter callBackTimeout: how long a mutation waits for a break's acknowledgement before
    ///   the client holding the promise is declared unreachable.
    public init(store: VolumeStore, callBackTimeout: TimeAmount = .seconds(10), logger: Logger = Logger(label: "peach.server")) {
        self.store = store
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        threadPool = NIOThreadPool(numberOfThreads: 8)
        threadPool.start()
        let registry = ClientRegistry()
        context = FileServerContext(
            store: store, processor: RequestProcessor(store: store), registry: registry, statistics: statistics,
            breakDelivery: BreakDelivery(registry: registry, store: store, statistics: statistics, timeout: callBackTimeout,
                                         threadPool: threadPool, logger: logger),
            threadPool: threadPool, eventLoopGroup: group, logger: logger)
    }

    /// Starts listening; returns the bound port (useful with port 0).
    @discardableResult
    public func start(host: String, port: Int) throws -> Int {
        let context = self.context
        let channel = try ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder()))
                    try channel.pipeline.syncOperations.addHandler(MessageToByteHandler(FrameEncoder()))
                    try channel.pipeline.syncOperations.addHandler(ConnectionHandler(server: context))
                }
            }
            .bind(host: host, port: port).wait()
        channelBox.set(channel)
        return channel.localAddress?.port ?? port
    }

    /// Stops listening, closes every connection and waits for the thread pool to finish.
    public func stop() {
        try? channelBox.take()?.close().wait()
        try? group.syncShutdownGracefully()
        try? threadPool.syncShutdownGracefully()
        store.releaseRoot()
    }

    public func callBackCount() throws -> Int { try store.callBackCount() }
}

import NIOConcurrencyHelpers

/// The listening channel, set once `start` binds.
final class NIOLockedValueBoxChannel: Sendable {
    private let box = NIOLockedValueBox<Channel?>(nil)
    func set(_ channel: Channel) { box.withLockedValue { $0 = channel } }
    func take() -> Channel? { box.withLockedValue { let c = $0; $0 = nil; return c } }
}
