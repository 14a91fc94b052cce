import Dispatch
import Metrics
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import Synchronization

/// `--metrics HOST:PORT`: this process's swift-metrics, in the Prometheus text format at
/// `GET /metrics`, from a small HTTP/1.1 listener on SwiftNIO's HTTP pipeline. Anything else gets
/// 404 or 405. Each connection answers one request and closes, and must do so within
/// `requestDeadline` of arriving, however slowly it sends. At most `maximumConnections` are open
/// at once; a connection arriving when all are taken closes the oldest, so connections that
/// trickle their headers cannot keep a scrape out (a scrape takes milliseconds, so it is never
/// the oldest for long).
///
/// The endpoint has no authentication, as a Prometheus exporter usually has none: keep it on
/// loopback or on a network only the monitoring system reaches (docs/operations.md).
public final class MetricsEndpoint: Sendable {
    /// The port it listens on (the one asked for, or the one the system chose for port 0).
    public let port: Int
    private let channel: Channel
    private let group: MultiThreadedEventLoopGroup
    static let maximumConnections = 16
    static let requestDeadline = TimeAmount.seconds(5)

    /// Bootstraps swift-metrics with a Prometheus factory (`MetricsSystem.bootstrap`: once per
    /// process) and listens on `host:port`. `refresh` runs before each scrape, to set the gauges
    /// read from state rather than counted as they move (callbacks held, cache bytes).
    public static func start(host: String, port: Int, refresh: @escaping @Sendable () -> Void) throws -> MetricsEndpoint {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        // File system operations take microseconds to seconds, not the web's 5 ms to 10 s.
        factory.defaultDurationHistogramBuckets = [
            .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .microseconds(2500),
            .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
            .milliseconds(250), .seconds(1), .seconds(5), .seconds(30),
        ]
        MetricsSystem.bootstrap(factory)
        return try MetricsEndpoint(host: host, port: port, registry: registry, refresh: refresh)
    }

    private init(host: String, port: Int, registry: PrometheusCollectorRegistry, refresh: @escaping @Sendable () -> Void) throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.group = group
        // The connections open, oldest first.
        let open = Mutex<[(id: ObjectIdentifier, channel: Channel)]>([])
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 16)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                let id = ObjectIdentifier(channel)
                let oldest = open.withLock { list -> Channel? in
                    let evicted = list.count >= Self.maximumConnections ? list.removeFirst().channel : nil
                    list.append((id, channel))
                    return evicted
                }
                oldest?.close(promise: nil)
                channel.closeFuture.whenComplete { _ in open.withLock { list in list.removeAll { $0.id == id } } }
                channel.eventLoop.scheduleTask(in: Self.requestDeadline) { channel.close(promise: nil) }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(allTimeout: Self.requestDeadline))
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(ScrapeHandler(registry: registry, refresh: refresh))
                }
            }
        do {
            channel = try bootstrap.bind(host: host, port: port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw error
        }
        self.port = channel.localAddress?.port ?? port
    }

    public func stop() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }
}

/// Answers one HTTP request on a connection, then closes it.
private final class ScrapeHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let registry: PrometheusCollectorRegistry
    private let refresh: @Sendable () -> Void
    private var head: HTTPRequestHead?

    init(registry: PrometheusCollectorRegistry, refresh: @escaping @Sendable () -> Void) {
        self.registry = registry
        self.refresh = refresh
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let request):
            head = request
        case .body:
            break  // a scrape has no body; whatever comes is dropped
        case .end:
            guard let request = head else { return }
            head = nil
            respond(to: request, context: context)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent { context.close(promise: nil) }
        context.fireUserInboundEventTriggered(event)
    }

    private func respond(to request: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = request.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? request.uri
        if path != "/metrics" {
            return send(.notFound, "text/plain", Array("not found: the metrics are at /metrics\n".utf8), for: request, context: context)
        }
        guard request.method == .GET || request.method == .HEAD else {
            return send(.methodNotAllowed, "text/plain", Array("GET /metrics\n".utf8), for: request, context: context)
        }
        // `refresh` reads the server's database (counts of callbacks and files): off the event
        // loop, which answers the reply once it is ready.
        let loop = context.eventLoop
        let bound = NIOLoopBound((self, context), eventLoop: loop)
        let (refresh, registry) = (self.refresh, self.registry)
        DispatchQueue.global().async {
            refresh()
            let body = registry.emitToBuffer()
            loop.execute {
                let (handler, context) = bound.value
                handler.send(.ok, "text/plain; version=0.0.4; charset=utf-8", body, for: request, context: context)
            }
        }
    }

    private func send(_ status: HTTPResponseStatus, _ contentType: String, _ body: [UInt8], for request: HTTPRequestHead,
                      context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: String(body.count))
        headers.add(name: "Connection", value: "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: status, headers: headers))), promise: nil)
        if request.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        }
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }
}
