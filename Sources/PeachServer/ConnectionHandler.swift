import Foundation
import GRDB
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import PeachProtocol

/// One cache manager's connection: requests in, replies and callback breaks out. This file holds
/// its state, life cycle and flow control; the extensions hold requests (+Requests), uploads
/// (+Uploads) and pushes (+Pushes).
///
/// All state lives on the channel's event loop, which does no disk I/O: SQLite work goes to the
/// server's database pool, file reads and writes to its file I/O pool, and replies to mutations
/// wait until the breaks they caused are acknowledged (see `BreakDelivery`).
///
/// Backpressure: frames wait in `backlog` until the connection has room: fewer than
/// `maximumRequestsInFlight` requests unanswered and its queued replies under the water mark.
/// While the backlog is not empty (or the frame budget is spent) the channel is not read, so a
/// client that sends without reading fills its own socket buffers, not the server's memory, and
/// holds no thread. Acknowledgements skip the backlog: a break must never wait behind requests.
final class ConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = Frame
    typealias OutboundIn = Frame
    typealias OutboundOut = Frame

    /// A StoreData whose data frames are still arriving.
    struct Upload {
        /// The StoreData request, answered through the request processor once the data is in.
        var request: Request
        /// The size the StoreData announced.
        var size: UInt64
        /// The upload file (empty for a store kept in memory, `buffered`).
        var path: String
        /// -1 until the upload file is open, and when it could not be created.
        var fd: Int32 = -1
        var received: UInt64 = 0
        /// Who the store acts as.
        var requester: Requester
        /// Bytes held in the disk reserve for it until its data is written (`DiskReserve.reserve`).
        var reserved: UInt64 = 0
        /// An open or a write is running on the file I/O pool: the next data frame waits.
        var busy = false
        /// The last frame is written, durable and closed: the file waits for the store.
        var finished = false
        /// Why the store fails once its data frames are in (they are read and dropped first):
        /// the upload file could not be created or written, or the size is over the limit.
        var failure: StatusCode?
        /// A small store's bytes, kept in memory (no upload file): they go inline into the
        /// database in the store's transaction. Nil for a store written to `path`.
        var buffered: [UInt8]?
    }

    /// Bytes of small stores one connection may hold in memory at once; a store past it is
    /// written to an upload file as a large one is.
    static let maximumBufferedUploadBytes = 256 << 10

    let server: FileServerContext
    let connectionID: UInt64
    var clientID: String?
    /// The design the client declared in Hello: whether it is granted callbacks.
    var design: ClientDesign = .afs
    /// The client gave every promise up (GiveUpAllCallBacks): it is leaving, and is promised
    /// nothing more on this connection unless it says Hello again.
    var saidFarewell = false
    /// The client machine's name from its TLS certificate; nil on a plain connection.
    var machineName: String?
    /// Who is at the other end: set by the TLS handshake, or at Hello for a plain connection.
    var principal: Principal? {
        // Its large frames count against its principal's share of the frame budget from now on.
        didSet { frameOwner.set(principal?.ownerKey ?? InboundMemoryBudget.unidentified) }
    }
    let frameOwner: FrameOwner
    var uploads: [UInt32: Upload] = [:]
    /// Bytes announced by the uploads kept in memory (`Upload.buffered`).
    var bufferedUploadBytes = 0
    /// Pushes sent and not yet acknowledged, with the opcode the acknowledgement must carry.
    var pendingAcks: [UInt32: (opcode: UInt16, promise: EventLoopPromise<Void>)] = [:]
    /// When the last frame arrived from the client: its lease runs from there.
    var lastContact = NIODeadline.now()
    /// When the last frame other than a ping arrived: pings alone do not keep a connection
    /// that holds no callbacks (`closeIfIdle`).
    var lastWork = NIODeadline.now()
    var nextPushID: UInt32 = 0
    var context: ChannelHandlerContext?
    var streamer: ContentStreamer?
    /// Frames read and not yet handled, in order.
    var backlog: [Frame] = []
    var backlogStart = 0
    /// Requests taken from the backlog whose reply (and content) is not yet written.
    var requestsInFlight = 0
    /// The reply bytes those requests may produce (`replyWeight`), at most the queue limit
    /// unless a single request needs more.
    var replyBytesInFlight = 0
    /// Each request in flight by request id: its weight, given back when its reply is written,
    /// and its operation and arrival, for its duration metric.
    var inFlight: [UInt32: (weight: Int, opcode: Opcode, arrival: NIODeadline)] = [:]
    /// The channel asked for a read while reading was held back.
    var readPending = false
    /// The shared frame budget is spent: no read until it frees up.
    var waitingForMemory = false
    var isClosed = false
    /// `handleBacklog` is running, and something it ran asked for it again.
    var handlingBacklog = false
    var backlogMoved = false
    /// A refusal (admin, or a Hello) was logged for this connection: once is enough, so that a
    /// peer repeating the request cannot fill the log.
    var refusalLogged = false

    init(server: FileServerContext, frameOwner: FrameOwner = FrameOwner()) {
        self.server = server
        self.frameOwner = frameOwner
        server.statistics.handlerCreated()
        self.connectionID = server.registry.newConnectionID()
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        streamer = ContentStreamer(channel: context.channel, fileIO: server.fileIO,
                                   stallTimeout: server.limits.stalledStreamTimeout)
    }

    deinit { server.statistics.handlerFreed() }

    /// The pipeline lets go of this handler: so does it of the context and the channel (held
    /// through `streamer`). Kept, they made a cycle that outlived every connection, about 4.4 KB
    /// each, never returned.
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        streamer?.closeAll()
        streamer = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let clientID {
            server.registry.unregister(clientID, connectionID: connectionID, lastContact: lastContact)
            let store = server.store
            _ = server.threadPool.runIfActive(eventLoop: context.eventLoop) { try store.noteLastSeen(client: clientID) }
            server.logger.info("client disconnected", metadata: ["client": "\(clientID)"])
        }
        isClosed = true
        streamer?.closeAll()
        // Uploads with work on the file I/O pool are cleaned up when it finishes (`uploadStepDone`).
        for (id, upload) in uploads where !upload.busy {
            uploads[id] = nil
            discard(upload)
        }
        backlog = []
        backlogStart = 0
        let acks = pendingAcks
        pendingAcks = [:]
        for (_, ack) in acks { ack.promise.fail(ChannelError.ioOnClosedChannel) }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if machineName == nil, error is NIOSSLError || error is BoringSSLError {
            // A refused certificate is logged with its reason by the check itself; this is the
            // rest: no certificate, no TLS at all, a handshake cut short.
            server.logger.notice("refused connection: TLS handshake failed", metadata: [
                "peer": "\(context.channel.remoteAddress.map { "\($0)" } ?? "-")", "error": "\(error)"])
        } else {
            server.logger.info("closing connection", metadata: ["client": "\(clientID ?? "-")", "error": "\(error)"])
        }
        context.close(promise: nil)
    }

    // MARK: Flow control

    func read(context: ChannelHandlerContext) {
        if mayRead { context.read() } else { readPending = true }
    }

    var hasRoom: Bool {
        requestsInFlight < server.limits.maximumRequestsInFlight && (context?.channel.isWritable ?? false)
    }

    /// Room for a request whose reply may take `weight` bytes: one request is always allowed.
    func hasRoom(forReplyOf weight: Int) -> Bool {
        hasRoom && (requestsInFlight == 0 || replyBytesInFlight + weight <= server.limits.maximumQueuedReplyBytes)
    }

    /// The most bytes a request's reply may take: READ's count, a small status otherwise
    /// (FetchData content is streamed under the water mark and is not counted here).
    static func replyWeight(of frame: Frame) -> Int {
        let status = 512
        // An admin report is at most one frame.
        if frame.opcode == Opcode.admin.rawValue { return Frame.maximumBodySize }
        guard frame.opcode == Opcode.read.rawValue else { return status }
        // After the credential: FID (16 bytes), offset (8), count.
        var body = frame.body
        guard (try? Credential.read(from: &body)) != nil,
              let count = body.getInteger(at: body.readerIndex + 24, as: UInt32.self) else { return status }
        return status + Int(min(count, UInt32(Frame.dataChunkSize)))
    }

    var mayRead: Bool { backlogStart == backlog.count && hasRoom && !waitingForMemory }

    func readIfAllowed() {
        guard readPending, mayRead, let context else { return }
        readPending = false
        context.read()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        streamer?.writabilityChanged()
        handleBacklog()
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case let wait as ServerFrameDecoder.WaitForMemory:
            waitingForMemory = true
            let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
            let eventLoop = context.eventLoop
            let budget = wait.budget
            budget.whenAvailable(owner: wait.owner) {
                eventLoop.execute {
                    let handler = loopBound.value
                    guard !handler.isClosed else { return budget.wakeNext() }
                    handler.waitingForMemory = false
                    handler.readIfAllowed()
                }
            }
        case IdleStateHandler.IdleStateEvent.read:
            closeIfIdle(context: context)
        case TLSUserEvent.handshakeCompleted:
            let tls = try? context.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self)
            machineName = tls?.peerCertificate?.subjectName.last { $0.type == .commonName }?.value ?? "?"
            principal = .machine(machineName ?? "?")
            server.logger.info("client machine authenticated", metadata: [
                "peer": "\(context.channel.remoteAddress.map { "\($0)" } ?? "-")", "machine": "\(machineName ?? "?")"])
        default:
            context.fireUserInboundEventTriggered(event)
        }
    }

    /// Nothing but pings came for `--idle-timeout` (or nothing at all): a connection with
    /// nothing in flight is closed unless its client holds callbacks and keeps pinging (it must
    /// stay reachable for their breaks). A holder silent for its whole lease is closed too: it is
    /// unreachable anyway, and its promises wait for it as for any client away
    /// (`BreakDelivery`). So neither pings alone nor one callback held in silence keeps a
    /// connection, and its slot under --max-clients, for good.
    func closeIfIdle(context: ChannelHandlerContext) {
        guard backlogStart == backlog.count, !waitingForMemory else { return }
        if !uploads.isEmpty {
            // An upload whose client stopped sending holds its file on the disk: nothing came
            // for the idle timeout while the server was reading, so it goes with the connection.
            guard uploads.values.allSatisfy({ !$0.busy && !$0.finished }),
                  NIODeadline.now() - lastContact >= server.limits.idleTimeout else { return }
            server.logger.info("closing connection with a stalled upload", metadata: ["client": "\(clientID ?? "-")"])
            return context.close(promise: nil)
        }
        guard requestsInFlight == 0 else { return }
        guard let clientID else {
            server.logger.info("closing idle connection that never said Hello")
            return context.close(promise: nil)
        }
        let now = NIODeadline.now()
        guard now - lastWork >= server.limits.idleTimeout else { return }
        if now - lastContact >= server.lease {
            server.logger.info("closing silent connection", metadata: ["client": "\(clientID)"])
            return context.close(promise: nil)
        }
        let store = server.store
        let channel = context.channel
        let logger = server.logger
        server.threadPool.runIfActive(eventLoop: context.eventLoop) {
            try store.callBackCount(client: clientID)
        }.whenSuccess { held in
            guard held == 0 else { return }
            logger.info("closing idle connection", metadata: ["client": "\(clientID)"])
            channel.close(promise: nil)
        }
    }

    // MARK: Frames

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        lastContact = .now()
        if frame.kind == .request && frame.opcode == Opcode.ping.rawValue {
            // A ping of a connection that has done nothing else for the idle timeout.
            if lastContact - lastWork >= server.limits.idleTimeout { closeIfIdle(context: context) }
        } else {
            lastWork = lastContact
        }
        do {
            if frame.kind == .pushAck { return try acknowledge(frame) }
            backlog.append(frame)
            handleBacklog()
        } catch {
            errorCaught(context: context, error: error)
        }
    }

    /// Handles the frames at the front of the backlog for which there is room, in order.
    func handleBacklog() {
        guard let context else { return }
        // A request answered at once (an error while the server stops) finishes inside this loop
        // and calls back here: the outer loop carries on instead of recursing once per frame.
        guard !handlingBacklog else { return backlogMoved = true }
        handlingBacklog = true
        defer { handlingBacklog = false }
        repeat {
            backlogMoved = false
            drainBacklog(context)
        } while backlogMoved && !isClosed
        readIfAllowed()
    }

    private func drainBacklog(_ context: ChannelHandlerContext) {
        while backlogStart < backlog.count {
            let frame = backlog[backlogStart]
            switch frame.kind {
            case .request:
                guard hasRoom(forReplyOf: Self.replyWeight(of: frame)) else { return }
            case .data:
                if uploads[frame.id]?.busy == true { return }
            default:
                break
            }
            backlogStart += 1
            if backlogStart == backlog.count {
                backlog.removeAll(keepingCapacity: backlog.count <= 64)
                backlogStart = 0
            }
            do {
                switch frame.kind {
                case .request: try receiveRequest(frame, context: context)
                case .data: try receiveData(frame)
                case .reply, .push, .pushAck: throw ProtocolError.unknownFrameKind(frame.kind.rawValue)
                }
            } catch {
                return errorCaught(context: context, error: error)
            }
        }
    }
}
