import Foundation
import NIOConcurrencyHelpers
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import PeachProtocol
import PeachSecurity

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
    private let group: EventLoopGroup
    private let ownsGroup: Bool
    private let state = NIOLockedValueBox(State())
    private let liveness = NIOLockedValueBox(Liveness())
    /// Serializes connection set-up so concurrent callers share one connection.
    private let connectLock = NIOLock()
    private let nextID = NIOLockedValueBox<UInt32>(0)
    private let handlers = NIOLockedValueBox<(hello: HelloHandler?, push: PushHandler?, closed: ClosedHandler?)>((nil, nil, nil))
    private let callTimeout: TimeAmount
    private let retry: RetryPolicy
    /// Says Hello on each connection (a cache manager); false for `peach admin`, which asks
    /// admin questions only and holds no promises.
    private let introduces: Bool
    /// Where "file server unreachable" and "file server back" go.
    private let logger: Logger?
    /// Requests that only read stop waiting once the server is away (`serverIsAway`): the cache
    /// manager then serves them from its cache (`--offline-reads`).
    private let readsGiveUpWhenAway: Bool
    /// Numbers for requests that must not be carried out twice, and those not settled yet.
    private let numbering = NIOLockedValueBox<(next: UInt64, outstanding: Set<UInt64>)>((1, []))
    /// Set by `beginShutdown`: no call waits past it, and none retries.
    private let shutdownDeadline = NIOLockedValueBox<NIODeadline?>(nil)
    private let helloTimeout: TimeAmount = .seconds(10)
    /// Mutual TLS with the client machine's certificate, or nil for plain TCP.
    private let tls: ClientTLS?

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

    private func channel() throws -> (Channel, NIOLoopBound<RPCHandler>) {
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

    private func openConnection() throws -> (Channel, NIOLoopBound<RPCHandler>) {
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
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder()))
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
    private static func explain(_ error: Error) -> String {
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

    private func newID() -> UInt32 { nextID.withLockedValue { $0 &+= 1; return $0 } }

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
    private func heard(sentAt: NIODeadline) {
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
    private func lostServer() {
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

    private func probeUntilBack() {
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
    private func startPinging(_ channel: Channel, handler: NIOLoopBound<RPCHandler>, lease: TimeAmount) -> RepeatedTask? {
        let interval = TimeAmount.nanoseconds(max(lease.nanoseconds / 3, 10_000_000))
        guard lease > .zero else { return nil }
        return channel.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [weak self] task in
            guard let self, channel.isActive else { return task.cancel() }
            let idle = self.liveness.withLockedValue { NIODeadline.now() - $0.lastHeard >= interval }
            guard idle else { return }
            let id = self.newID()
            let sentAt = NIODeadline.now()
            let promise = channel.eventLoop.makePromise(of: Reply.self)
            handler.value.register(id: id, .init(opcode: Opcode.ping.rawValue, promise: promise, sink: nil))
            var body = channel.allocator.buffer(capacity: 16)
            RequestCodec.encode(.ping, credential: Credential(uid: 0, gid: 0), into: &body)
            channel.writeAndFlush(Frame(kind: .request, id: id, opcode: Opcode.ping.rawValue, body: body), promise: nil)
            self.statistics.update { $0.pings += 1 }
            let timeout = channel.eventLoop.scheduleTask(in: lease) {
                handler.value.cancel(id: id, FileSystemError(ETIMEDOUT, "no answer to a ping"))
            }
            promise.futureResult.whenComplete { result in
                timeout.cancel()
                if case .success = result { self.heard(sentAt: sentAt) }
            }
        }
    }

    // MARK: Retries

    /// From now on, no call waits longer than `grace` and none is retried: unmounting must not
    /// wait for a server that is away.
    public func beginShutdown(within grace: TimeAmount) {
        shutdownDeadline.withLockedValue { $0 = .now() + grace }
    }

    /// Requests whose repetition could do something twice: they are numbered, so that the server
    /// answers a repeat from its record (`RequestNumber`).
    private static func isIdempotent(_ request: Request) -> Bool {
        switch request {
        case .createFile, .makeDir, .symlink, .link, .removeFile, .removeDir, .rename: false
        case .storeData(_, _, _, _, let baseVersion): baseVersion == nil
        default: true
        }
    }

    /// Runs `attempt` (connect, send, wait), again after each failure to reach the server, as
    /// the retry policy allows.
    private func withRetries<T>(_ request: Request,
                                _ attempt: (Channel, NIOLoopBound<RPCHandler>, NIODeadline, RequestNumber?) throws -> T) throws -> T {
        let started = NIODeadline.now()
        var pause = TimeAmount.milliseconds(50)
        let sequence = Self.isIdempotent(request) ? nil : numbering.withLockedValue { n -> UInt64 in
            defer { n.next += 1 }
            n.outstanding.insert(n.next)
            return n.next
        }
        defer { if let sequence { _ = numbering.withLockedValue { $0.outstanding.remove(sequence) } } }
        while true {
            let deadline = attemptDeadline(started: started)
            let number = sequence.map { sequence in
                RequestNumber(sequence: sequence, settledBelow: numbering.withLockedValue { $0.outstanding.min() ?? sequence })
            }
            do {
                let (channel, handler) = try channel()
                return try attempt(channel, handler, deadline, number)
            } catch let error as FileSystemError where error.serverUnreachable {
                lostServer()
                if retry == .failFast || shutdownDeadline.withLockedValue({ $0 }) != nil { throw error }
                if readsGiveUpWhenAway && !request.isChange && serverIsAway { throw error }
                if case .soft(let limit) = retry, NIODeadline.now() - started >= limit {
                    throw FileSystemError(ETIMEDOUT, "the file server did not answer for \(limit.nanoseconds / 1_000_000_000) s (--soft)")
                }
                try waitBeforeRetry(pause, started: started)
                pause = min(pause * 2, .seconds(1))
            }
        }
    }

    /// The latest an attempt may wait for its reply.
    private func attemptDeadline(started: NIODeadline) -> NIODeadline {
        var deadline = NIODeadline.now() + callTimeout
        if case .soft(let limit) = retry { deadline = min(deadline, max(started + limit, .now() + .milliseconds(100))) }
        if let shutdown = shutdownDeadline.withLockedValue({ $0 }) { deadline = min(deadline, max(shutdown, .now() + .milliseconds(10))) }
        return deadline
    }

    /// Sleeps `pause` in short steps, giving up at once if the caller was interrupted or the
    /// mount is going away.
    private func waitBeforeRetry(_ pause: TimeAmount, started: NIODeadline) throws {
        let end = NIODeadline.now() + pause
        repeat {
            if Caller.isInterrupted { throw FileSystemError(EINTR, "interrupted while the file server was away") }
            if shutdownDeadline.withLockedValue({ $0 }) != nil { throw FileSystemError.unreachable(EIO, "unmounting") }
            usleep(20_000)
        } while NIODeadline.now() < end
    }

    /// Sends a request and waits for its reply until `deadline`; `sink` receives FetchData's
    /// data frames and `upload` writes StoreData's.
    private func send(_ request: Request, on channel: Channel, handler: NIOLoopBound<RPCHandler>, until deadline: NIODeadline? = nil,
                      number: RequestNumber? = nil, sink: (@Sendable (ByteBuffer) throws -> Void)? = nil,
                      upload: ((Channel, UInt32) throws -> Void)? = nil, data: ByteBuffer? = nil) throws -> Reply {
        statistics.countRequest(request.opcode)
        let id = newID()
        var body = channel.allocator.buffer(capacity: 64)
        number?.write(into: &body)
        RequestCodec.encode(request, credential: Caller.credential, into: &body)
        let frame = Frame(kind: .request, flags: number == nil ? 0 : Frame.flagNumbered, id: id, opcode: request.opcode.rawValue, body: body)
        let opcode = request.opcode.rawValue
        // Hello gets a short timeout: a server that accepts but never answers fails a mount fast.
        var helloLimit = helloTimeout
        if case .soft(let soft) = retry { helloLimit = min(helloLimit, soft) }
        let limit = request.opcode == .hello ? .now() + helloLimit : deadline ?? .now() + callTimeout
        // One hop to the event loop per request: it registers the call, arms and later disarms
        // the timeout, and writes the frame; the caller's thread then sleeps once, until the
        // reply wakes it. (Arming, disarming and waiting on a future from this thread each woke
        // the event loop again: four wake-ups per request.)
        let answer = ReplyWaiter()
        channel.eventLoop.execute {
            let promise = channel.eventLoop.makePromise(of: Reply.self)
            handler.value.register(id: id, .init(opcode: opcode, promise: promise, sink: sink))
            let timeout = channel.eventLoop.scheduleTask(deadline: limit) {
                // Forget the call, so late data frames for it are not written anywhere, and drop a
                // connection whose server does not answer (an upload blocked on it then fails too).
                handler.value.cancel(id: id, FileSystemError.unreachable(ETIMEDOUT, "the file server did not answer"))
                channel.close(promise: nil)
            }
            promise.futureResult.whenComplete { result in
                timeout.cancel()
                answer.complete(result)
            }
            if let data {
                // A small store's whole content, read before the hop: its one data frame goes out
                // with the request, and nothing waits for the write (a failed write closes the
                // connection, which fails the call).
                channel.write(frame, promise: nil)
                channel.writeAndFlush(Frame(kind: .data, flags: Frame.flagLastChunk, id: id, opcode: opcode, body: data), promise: nil)
            } else {
                channel.writeAndFlush(frame, promise: nil)
            }
        }
        let sentAt = NIODeadline.now()
        do {
            try upload?(channel, id)
        } catch {
            // No reply is awaited now: forget the call, which disarms its timeout.
            channel.eventLoop.execute { handler.value.cancel(id: id, error) }
            throw error
        }
        // The event loop answers by `limit` (the timeout); past it by far, it is gone.
        guard let result = answer.wait(until: limit + .seconds(5)) else {
            throw FileSystemError.unreachable(ETIMEDOUT, "the connection's event loop did not answer")
        }
        do {
            let reply = try result.get()
            heard(sentAt: sentAt)
            statistics.metrics.requestAnswered(request.opcode, after: (NIODeadline.now() - sentAt).nanoseconds)
            return reply
        } catch let code as StatusCode {
            heard(sentAt: sentAt)
            throw FileSystemError(code)
        } catch {
            throw FileSystemError.transport(error)
        }
    }

    public func call(_ request: Request) throws -> Reply {
        try withRetries(request) { channel, handler, deadline, number in
            try send(request, on: channel, handler: handler, until: deadline, number: number)
        }
    }

    /// FetchData: the reply's status, then the content, each chunk handed to `sink` in order
    /// (on the connection's event loop).
    public func fetchData(_ fid: FID, sink: @escaping @Sendable (ByteBuffer) throws -> Void, reset: @Sendable () -> Void = {}) throws -> (FileStatus, UInt64) {
        let reply = try withRetries(.fetchData(fid)) { channel, handler, deadline, _ in
            reset()
            return try send(.fetchData(fid), on: channel, handler: handler, until: deadline, sink: sink)
        }
        guard case .fetchData(let status, let expiry) = reply else { throw FileSystemError(EIO, "unexpected reply") }
        return (status, expiry)
    }

    /// An admin question's report (JSON, `AdminReports`).
    public func admin(_ query: AdminQuery) throws -> [UInt8] {
        guard case .adminReport(let json) = try call(.admin(query)) else { throw FileSystemError.unexpectedReply }
        return json
    }

    /// An admin backup: the archive's bytes, handed to `sink` in order (on the event loop).
    /// Returns the size the server announced. Waits up to `limit` for the server to pack and send it.
    public func backup(limit: TimeAmount, sink: @escaping @Sendable (ByteBuffer) throws -> Void) throws -> UInt64 {
        let reply = try withRetries(.admin(.backup)) { channel, handler, _, _ in
            try send(.admin(.backup), on: channel, handler: handler, until: .now() + limit, sink: sink)
        }
        guard case .backup(let size) = reply else { throw FileSystemError.unexpectedReply }
        return size
    }

    /// FetchData of one range into memory (a file read through, larger than the cache): the
    /// status, the promise's expiry and the bytes.
    public func fetchRange(_ fid: FID, offset: UInt64, length: UInt64) throws -> (FileStatus, UInt64, [UInt8]) {
        let request = Request.fetchData(fid, range: ByteRange(offset: offset, length: length))
        let collected = NIOLockedValueBox<[UInt8]>([])
        let reply = try withRetries(request) { channel, handler, deadline, _ -> Reply in
            collected.withLockedValue { $0.removeAll(keepingCapacity: true) }
            return try send(request, on: channel, handler: handler, until: deadline, sink: { chunk in
                collected.withLockedValue { $0 += chunk.readableBytesView }
            })
        }
        guard case .fetchData(let status, let expiry) = reply else { throw FileSystemError(EIO, "unexpected reply") }
        return (status, expiry, collected.withLockedValue { $0 })
    }

    /// How much of a file one FetchData asks for, and how much may wait for the disk.
    static let fetchWindow = 16 << 20
    static let maximumQueuedFetchBytes = 32 << 20

    /// FetchData of a file's whole content into `fd` (from offset 0), written off the event loop
    /// (`FetchWriter`). Returns the status, the promise's expiry and the bytes written.
    ///
    /// The file comes in windows of `fetchWindow` bytes, each asked for once no more than
    /// `maximumQueuedFetchBytes` minus a window wait for the disk: a slow disk then slows the
    /// fetch, but the connection is always read, so callback breaks behind the data are
    /// acknowledged at once. A file whose data version moves between windows is fetched again
    /// from its start.
    public func fetchData(_ fid: FID, into fd: Int32) throws -> (FileStatus, UInt64, UInt64) {
        let writer = FetchWriter(fd: fd)
        var offset: UInt64 = 0
        var version: UInt64?
        var restarts = 0
        var last: (status: FileStatus, expiry: UInt64)?
        do {
            while true {
                writer.waitUntilQueued(atMost: Self.maximumQueuedFetchBytes - Self.fetchWindow)
                let request = Request.fetchData(fid, range: ByteRange(offset: offset, length: UInt64(Self.fetchWindow)))
                let reply = try withRetries(request) { channel, handler, deadline, _ -> Reply in
                    // Each attempt writes the window from its start.
                    writer.rewind(to: offset)
                    return try send(request, on: channel, handler: handler, until: deadline, sink: { writer.accept($0) })
                }
                guard case .fetchData(let status, let expiry) = reply else { throw FileSystemError(EIO, "unexpected reply") }
                if let version, version != status.dataVersion {
                    // Stored anew between two windows: the parts would not match.
                    restarts += 1
                    guard restarts < 8 else { throw FileSystemError(EAGAIN, "the file kept changing during its fetch") }
                    offset = 0
                    writer.rewind(to: 0)
                    continue
                }
                version = status.dataVersion
                last = (status, expiry)
                let received = writer.receivedUpTo - offset
                offset += received
                if received < UInt64(Self.fetchWindow) || offset >= status.size { break }
            }
            try writer.finish()
        } catch {
            _ = try? writer.finish()
            throw error
        }
        // An earlier attempt may have written past the end of the file.
        guard ftruncate(fd, off_t(offset)) == 0 else { throw FileSystemError(errno, "trimming the fetched copy") }
        guard let last else { throw FileSystemError.unexpectedReply }
        return (last.status, last.expiry, offset)
    }

    /// StoreData: streams `size` bytes from `fd` (from offset 0) and returns the new status.
    /// With `baseVersion`, only if the file is still at that data version (else versionConflict).
    public func storeData(_ fid: FID, fd: Int32, size: UInt64, mtime: Timespec,
                          status: StoreStatusChange = StoreStatusChange(), baseVersion: UInt64? = nil) throws -> (FileStatus, UInt64) {
        let request = Request.storeData(fid, size: size, mtime: mtime, status: status, baseVersion: baseVersion)
        if size <= UInt64(Self.smallStoreSize) {
            // One frame of data: read now, sent with the request in one trip to the event loop.
            let reply = try withRetries(request) { channel, handler, deadline, number in
                try send(request, on: channel, handler: handler, until: deadline, number: number,
                         data: try Self.readWhole(fd: fd, size: Int(size), allocator: channel.allocator))
            }
            guard case .status(let status, let expiry) = reply else { throw FileSystemError(EIO, "unexpected reply") }
            return (status, expiry)
        }
        let reply = try withRetries(request) { channel, handler, deadline, number in
            try send(request, on: channel, handler: handler, until: deadline, number: number, upload: { channel, id in
                do {
                    try Self.upload(fd: fd, size: size, channel: channel, id: id)
                } catch {
                    // The server cannot tell a half-sent file from a slow one: drop the connection,
                    // which discards the upload there and fails this call here. A write that
                    // failed because the connection went is a lost server, retried as any
                    // request is (a hard mount waits, a soft one until --timeout); a local
                    // failure (reading the cached copy) is not.
                    channel.close(promise: nil)
                    throw FileSystemError.transport(error)
                }
            })
        }
        guard case .status(let status, let expiry) = reply else { throw FileSystemError(EIO, "unexpected reply") }
        return (status, expiry)
    }

    /// Stores up to this size send their data with the request (the server keeps stores up to
    /// its `--inline-max`, 64 KiB by default, in memory as well).
    static let smallStoreSize = 64 << 10

    /// The first `size` bytes of the cached copy open as `fd`.
    private static func readWhole(fd: Int32, size: Int, allocator: ByteBufferAllocator) throws -> ByteBuffer {
        var buffer = allocator.buffer(capacity: size)
        let got = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { raw in
            var done = 0
            while done < size {
                let n = pread(fd, raw.baseAddress! + done, size - done, off_t(done))
                if n < 0 && errno == EINTR { continue }
                guard n >= 0 else { throw FileSystemError(errno, "reading the cached copy") }
                if n == 0 { break }
                done += n
            }
            return done
        }
        guard got == size else { throw FileSystemError(EIO, "the cached copy is shorter than its size") }
        return buffer
    }

    private static func upload(fd: Int32, size: UInt64, channel: Channel, id: UInt32) throws {
        var offset: UInt64 = 0
        var inFlight: [EventLoopFuture<Void>] = []
        repeat {
            let want = Int(min(UInt64(Frame.dataChunkSize), size - offset))
            var buffer = channel.allocator.buffer(capacity: want)
            let got = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: want) { raw in
                let n = pread(fd, raw.baseAddress, want, off_t(offset))
                guard n >= 0 else { throw FileSystemError(errno, "reading the cached copy") }
                return n
            }
            guard got == want else { throw FileSystemError(EIO, "the cached copy is shorter than its size") }
            offset += UInt64(got)
            let last = offset == size
            inFlight.append(channel.writeAndFlush(Frame(kind: .data, flags: last ? Frame.flagLastChunk : 0, id: id,
                                                        opcode: Opcode.storeData.rawValue, body: buffer)))
            if inFlight.count >= 4 { try inFlight.removeFirst().wait() }
        } while offset < size
        for future in inFlight { try future.wait() }
    }
}

/// The reply to one request, handed from the event loop to the thread that waits for it.
private final class ReplyWaiter: @unchecked Sendable {
    private let ready = DispatchSemaphore(value: 0)
    /// Written once, before `ready` is signalled; read after it is waited for.
    private var result: Result<Reply, Error>?

    func complete(_ result: Result<Reply, Error>) {
        self.result = result
        ready.signal()
    }

    /// The result, or nil if none came by `deadline`.
    func wait(until deadline: NIODeadline) -> Result<Reply, Error>? {
        let nanoseconds = max(0, (deadline - .now()).nanoseconds)
        guard ready.wait(timeout: .now() + .nanoseconds(Int(clamping: nanoseconds))) == .success else { return nil }
        return result
    }
}
