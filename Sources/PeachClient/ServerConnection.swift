import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import PeachProtocol
import PeachSecurity
import PeachSupport

/// The cache manager's one TCP connection to its file server. Calls block the calling thread
/// (a FUSE worker or a test), never an event loop. A broken connection fails the calls in flight;
/// the next attempt reconnects and says Hello again. `RetryPolicy` says whether a call that could
/// not reach the server waits and retries (a hard mount) or fails.
public final class ServerConnection: Sendable {
    /// What a call does when the server cannot be reached or does not answer.
    public enum RetryPolicy: Sendable, Equatable {
        /// Fail at once with EIO (ETIMEDOUT after the call timeout): in-process clients, tests.
        case failFast
        /// Wait, reconnect and retry until the server answers, as an NFS hard mount does. The
        /// caller can interrupt the wait (a signal), and unmounting ends it.
        case hard
        /// As hard, for at most this long; then ETIMEDOUT (`peach mount --soft --timeout N`).
        case soft(TimeAmount)
    }

    /// Called after each successful Hello, before any other request on that connection.
    /// `leaseLapsed`: this is a reconnect, and the lease ran out before it (the client went
    /// without the server for longer than a lease), so no promise may be trusted before it is
    /// revalidated. A reconnect within the lease keeps them: the server waits for a client it
    /// cannot reach until its lease ends before completing a change that breaks its promises,
    /// and says `callBacksLost` in the HelloReply when one was broken meanwhile.
    public typealias HelloHandler = @Sendable (_ reply: HelloReply, _ leaseLapsed: Bool) -> Void
    public typealias PushHandler = @Sendable (Push, _ ack: @escaping @Sendable () -> Void) -> Void
    /// Called when an established connection closes (server restart, network failure).
    public typealias ClosedHandler = @Sendable () -> Void

    private struct State {
        var channel: Channel?
        var handler: NIOLoopBound<RPCHandler>?
        var connections = 0
        var pinger: RepeatedTask?
    }

    /// What the client knows of the server's liveness, for its lease on callbacks.
    private struct Liveness {
        /// From HelloReply; nil before the first Hello.
        var lease: TimeAmount?
        /// When the latest request that got an answer was sent: the server was alive after it.
        var lastHeard = NIODeadline.uptimeNanoseconds(0)
        /// Pushes received and not yet handled: a reply that came after them proves nothing
        /// until they are (a break may be among them).
        var unhandledPushes = 0
        /// Since when the server could not be reached (a refused connect, a dropped connection,
        /// no answer); nil once it answers again.
        var awaySince: NIODeadline?
    }

    public let address: ServerAddress
    public let clientID: String
    public let epoch: UInt64
    /// Declared in Hello: AFS-style connections are granted callbacks, NFS-style ones are not.
    public let design: ClientDesign
    let statistics: ClientStatistics
    let group: EventLoopGroup
    let ownsGroup: Bool
    private let state = NIOLockedValueBox(State())
    private let liveness = NIOLockedValueBox(Liveness())
    /// Serializes connection set-up so concurrent callers share one connection.
    let connectLock = NIOLock()
    let nextID = NIOLockedValueBox<UInt32>(0)
    let handlers = NIOLockedValueBox<(hello: HelloHandler?, push: PushHandler?, closed: ClosedHandler?)>((nil, nil, nil))
    let callTimeout: TimeAmount
    let retry: RetryPolicy
    /// Says Hello on each connection (a cache manager); false for `peach admin`, which asks
    /// admin questions only and holds no promises.
    let introduces: Bool
    /// Where "file server unreachable" and "file server back" go.
    let logger: Logger?
    /// Requests that only read stop waiting once the server is away (`serverIsAway`): the cache
    /// manager then serves them from its cache (`--offline-reads`).
    let readsGiveUpWhenAway: Bool
    /// Numbers for requests that must not be carried out twice, and those not settled yet.
    let numbering = NIOLockedValueBox<(next: UInt64, outstanding: Set<UInt64>)>((1, []))
    /// Set by `beginShutdown`: no call waits past it, and none retries.
    let shutdownDeadline = NIOLockedValueBox<NIODeadline?>(nil)
    let helloTimeout: TimeAmount = .seconds(10)
    /// Mutual TLS with the client machine's certificate, or nil for plain TCP.
    let tls: ClientTLS?

    public init(address: ServerAddress, clientID: String, epoch: UInt64, design: ClientDesign = .afs, statistics: ClientStatistics,
                group: EventLoopGroup? = nil, callTimeout: TimeAmount = .seconds(120), tls: ClientTLS? = nil,
                retry: RetryPolicy = .failFast, readsGiveUpWhenAway: Bool = false, introduces: Bool = true, logger: Logger? = nil) {
        self.retry = retry
        self.logger = logger
        self.introduces = introduces
        self.readsGiveUpWhenAway = readsGiveUpWhenAway
        self.address = address
        self.tls = tls
        self.clientID = clientID
        self.epoch = epoch
        self.design = design
        self.statistics = statistics
        self.group = group ?? MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.ownsGroup = group == nil
        self.callTimeout = callTimeout
    }

    public func setHandlers(hello: @escaping HelloHandler, push: @escaping PushHandler, closed: ClosedHandler? = nil) {
        handlers.withLockedValue { $0 = (hello, push, closed) }
    }

    /// Connects and says Hello now (normally the first call does it).
    public func connect() throws {
        _ = try channel()
    }

    public func close() {
        let channel = state.withLockedValue { s -> Channel? in
            defer { s.channel = nil; s.handler = nil }
            s.pinger?.cancel()
            s.pinger = nil
            return s.channel
        }
        try? channel?.close().wait()
        if ownsGroup { try? group.syncShutdownGracefully() }
    }

    func channel() throws -> (Channel, NIOLoopBound<RPCHandler>) {
        if let current = state.withLockedValue({ s in s.channel.flatMap { c in s.handler.map { (c, $0) } } }), current.0.isActive {
            return current
        }
        return try connectLock.withLock {
            if let current = state.withLockedValue({ s in s.channel.flatMap { c in s.handler.map { (c, $0) } } }), current.0.isActive {
                return current
            }
            return try openConnection()
        }
    }

    func openConnection() throws -> (Channel, NIOLoopBound<RPCHandler>) {
        let pushHandler: PushHandler = { [handlers, liveness] push, ack in
            liveness.withLockedValue { $0.unhandledPushes += 1 }
            // Handled once acknowledged: the cache manager acknowledges after applying it.
            let handled: @Sendable () -> Void = {
                liveness.withLockedValue { $0.unhandledPushes -= 1 }
                ack()
            }
            if let handle = handlers.withLockedValue({ $0.push }) { handle(push, handled) } else { handled() }
        }
        let closedHandler: ClosedHandler = { [handlers, weak self] in
            self?.lostServer()
            handlers.withLockedValue { $0.closed }?()
        }
        if let problem = tls?.problem() { throw FileSystemError(EACCES, problem) }
        let tls = self.tls
        let serverName = ClientTLS.serverName(for: address.host)
        let channel: Channel
        do {
            channel = try ClientBootstrap(group: group)
                .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                .connectTimeout(.seconds(10))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let tls {
                            try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls.context, serverHostname: serverName))
                        }
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(StreamingFrameDecoder()))
                        try channel.pipeline.syncOperations.addHandler(MessageToByteHandler(FrameEncoder()))
                        try channel.pipeline.syncOperations.addHandler(RPCHandler(onPush: pushHandler, onClose: closedHandler))
                    }
                }
                .connect(host: address.host, port: address.port).wait()
        } catch {
            var failure = FileSystemError(EIO, "cannot reach the file server at \(address): \(Self.explain(error))")
            // A refused certificate is an answer; anything else may pass (a retry can help).
            failure.serverUnreachable = TLSFailure.describe(error) == nil
            throw failure
        }
        let handler = try channel.eventLoop.submit {
            NIOLoopBound(try channel.pipeline.syncOperations.handler(type: RPCHandler.self), eventLoop: channel.eventLoop)
        }.wait()
        let isReconnect = state.withLockedValue { s -> Bool in
            s.connections += 1
            return s.connections > 1
        }
        guard introduces else {
            state.withLockedValue { s in
                s.channel = channel
                s.handler = handler
            }
            return (channel, handler)
        }
        let leaseLapsed = isReconnect && !leaseIsValid()
        let reply: Reply
        do {
            reply = try send(.hello(Hello(clientID: clientID, epoch: epoch, design: design)), on: channel, handler: handler)
        } catch let error as FileSystemError where tls == nil && error.reason == RPCHandler.closedReason {
            // Also what a server that is going down does: worth a retry under a hard mount.
            throw FileSystemError.unreachable(EIO, "the server closed the connection at Hello (it may require TLS: --tls-cert, --tls-key, --tls-ca)")
        } catch let error as FileSystemError where error.serverCode == .accessDenied {
            throw FileSystemError(EACCES, "the server refused client id \(clientID): another user or machine introduced it "
                                  + "(each user's mount needs a cache directory of its own)")
        }
        guard case .hello(let hello) = reply else { throw FileSystemError(EIO, "unexpected reply to Hello") }
        let lease = TimeAmount.milliseconds(Int64(hello.leaseMilliseconds))
        liveness.withLockedValue { $0.lease = lease }
        handlers.withLockedValue { $0.hello }?(hello, leaseLapsed)
        let pinger = startPinging(channel, handler: handler, lease: lease)
        state.withLockedValue { s in
            s.pinger?.cancel()
            s.channel = channel
            s.handler = handler
            s.pinger = pinger
        }
        return (channel, handler)
    }

    /// One short reason for a failed connect ("Connection refused"), not NIO's whole story.
    static func explain(_ error: Error) -> String {
        if let tls = TLSFailure.describe(error) { return tls }
        if let failure = error as? NIOConnectionError {
            for attempt in failure.connectionErrors {
                if let io = attempt.error as? IOError { return String(cString: strerror(io.errnoCode)) }
            }
            if failure.dnsAAAAError != nil || failure.dnsAError != nil { return "cannot resolve \(failure.host)" }
        }
        if error is ChannelError { return "connection timed out" }
        if error is SocketAddressError.UnknownHost { return "cannot resolve the host name" }
        return "\(error)"
    }

    func newID() -> UInt32 { nextID.withLockedValue { $0 &+= 1; return $0 } }

    // MARK: Lease

    /// Whether the client may trust its callbacks now: it heard from the server within the
    /// lease (counted from when it sent the request answered), and has handled every push that
    /// came before that answer.
    public func leaseIsValid() -> Bool {
        liveness.withLockedValue { l in
            guard let lease = l.lease, l.unhandledPushes == 0 else { return false }
            return NIODeadline.now() < l.lastHeard + lease
        }
    }

    /// How long the lease still holds; nil when it does not.
    public func leaseRemaining() -> TimeAmount? {
        liveness.withLockedValue { l in
            guard let lease = l.lease, l.unhandledPushes == 0 else { return nil }
            let remaining = l.lastHeard + lease - .now()
            return remaining > .zero ? remaining : nil
        }
    }

    /// The server answered a request sent at `sentAt`.
    func heard(sentAt: NIODeadline) {
        let awaySince = liveness.withLockedValue { l -> NIODeadline? in
            l.lastHeard = max(l.lastHeard, sentAt)
            defer { l.awaySince = nil }
            return l.awaySince
        }
        if let awaySince {
            statistics.update { $0.serverReachable = true }
            let seconds = Double((NIODeadline.now() - awaySince).nanoseconds) / 1e9
            logger?.notice("file server back", metadata: ["server": "\(address)", "awaySeconds": "\(String(format: "%.1f", seconds))"])
        }
    }

    /// The server could not be reached or dropped the connection. While it is away, a probe
    /// reconnects every second, so that a mount that only reads (`--offline-reads`) learns when
    /// it is back.
    func lostServer() {
        let first = liveness.withLockedValue { l -> Bool in
            guard l.awaySince == nil else { return false }
            l.awaySince = .now()
            return true
        }
        guard first else { return }
        statistics.update { $0.serverReachable = false }
        // Not when the mount is ending: its own close of the connection is no news.
        if shutdownDeadline.withLockedValue({ $0 }) == nil {
            logger?.notice("file server unreachable", metadata: ["server": "\(address)"])
        }
        probeUntilBack()
    }

    func probeUntilBack() {
        DispatchQueue.global().asyncAfter(deadline: .now() + 1) { [weak self] in
            guard let self, self.shutdownDeadline.withLockedValue({ $0 }) == nil,
                  self.liveness.withLockedValue({ $0.awaySince }) != nil else { return }
            if (try? self.channel()) == nil { self.probeUntilBack() }
        }
    }

    /// `peach fs checkservers`: whether the server answers a ping within `timeout`, and how fast.
    /// A server already known to be away is reported as such without waiting for it.
    public func check(timeout: TimeAmount) -> ServerCheck {
        let wallNow = Date()
        let away = liveness.withLockedValue { $0.awaySince }
        func date(_ deadline: NIODeadline) -> Double {
            wallNow.timeIntervalSince1970 - Double((NIODeadline.now() - deadline).nanoseconds) / 1e9
        }
        if let away { return ServerCheck(server: "\(address)", reachable: false, unreachableSince: date(away), roundTripMilliseconds: nil) }
        do {
            let (channel, handler) = try channel()
            let sent = NIODeadline.now()
            _ = try send(.ping, on: channel, handler: handler, until: .now() + timeout)
            let milliseconds = Double((NIODeadline.now() - sent).nanoseconds) / 1e6
            return ServerCheck(server: "\(address)", reachable: true, unreachableSince: nil, roundTripMilliseconds: milliseconds)
        } catch {
            // No answer is the server away; an answer that is an error is not (the same test as withRetries').
            if (error as? FileSystemError)?.serverUnreachable == true { lostServer() }
            let since = liveness.withLockedValue { $0.awaySince } ?? .now()
            return ServerCheck(server: "\(address)", reachable: false, unreachableSince: date(since), roundTripMilliseconds: nil)
        }
    }

    /// The server is away: it could not be reached, and the lease has run out since.
    public var serverIsAway: Bool {
        liveness.withLockedValue { l in
            guard let since = l.awaySince else { return false }
            return NIODeadline.now() >= max(since, l.lastHeard + (l.lease ?? .zero))
        }
    }

    /// Pings an idle connection every third of a lease, so that a client with nothing to ask
    /// keeps its lease. On the connection's event loop; nothing blocks.
    func startPinging(_ channel: Channel, handler: NIOLoopBound<RPCHandler>, lease: TimeAmount) -> RepeatedTask? {
        let interval = TimeAmount.nanoseconds(max(lease.nanoseconds / 3, 10_000_000))
        guard lease > .zero else { return nil }
        return channel.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [weak self] task in
            guard let self, channel.isActive else { return task.cancel() }
            let idle = self.liveness.withLockedValue { NIODeadline.now() - $0.lastHeard >= interval }
            guard idle else { return }
            let sentAt = NIODeadline.now()
            let frame = Self.frame(.ping, id: self.newID(), number: nil, credential: Credential(uid: 0, gid: 0), allocator: channel.allocator)
            self.statistics.update { $0.pings += 1 }
            Self.start(frame, on: channel, handler: handler, sink: nil, until: .now() + lease,
                       timedOut: FileSystemError(ETIMEDOUT, "no answer to a ping"), closingOnTimeout: false) { result in
                if case .success = result { self.heard(sentAt: sentAt) }
            }
        }
    }
}
