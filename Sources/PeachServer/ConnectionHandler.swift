import Foundation
import GRDB
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import PeachProtocol

/// One cache manager's connection: requests in, replies and callback breaks out.
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
    private struct Upload {
        var fid: FID
        var size: UInt64
        var mtime: Timespec
        var path: String
        /// -1 until the upload file is open, and when it could not be created.
        var fd: Int32 = -1
        var received: UInt64 = 0
        /// Who the store acts as.
        var identity: Identity
        /// An open or a write is running on the file I/O pool: the next data frame waits.
        var busy = false
        /// Why the store fails once its data frames are in (they are read and dropped first):
        /// the upload file could not be created or written, or the size is over the limit.
        var failure: StatusCode?
    }

    private let server: FileServerContext
    let connectionID: UInt64
    private var clientID: String?
    /// The client machine's name from its TLS certificate; nil on a plain connection.
    private var machineName: String?
    /// Who is at the other end: set by the TLS handshake, or at Hello for a plain connection.
    private var principal: Principal?
    private var uploads: [UInt32: Upload] = [:]
    /// Pushes sent and not yet acknowledged, with the opcode the acknowledgement must carry.
    private var pendingAcks: [UInt32: (opcode: UInt16, promise: EventLoopPromise<Void>)] = [:]
    private var nextPushID: UInt32 = 0
    private var context: ChannelHandlerContext?
    private var streamer: ContentStreamer?
    /// Frames read and not yet handled, in order.
    private var backlog: [Frame] = []
    private var backlogStart = 0
    /// Requests taken from the backlog whose reply (and content) is not yet written.
    private var requestsInFlight = 0
    /// The reply bytes those requests may produce (`replyWeight`), at most the queue limit
    /// unless a single request needs more.
    private var replyBytesInFlight = 0
    /// Each request's weight, by request id, given back when its reply is written.
    private var weights: [UInt32: Int] = [:]
    /// The channel asked for a read while reading was held back.
    private var readPending = false
    /// The shared frame budget is spent: no read until it frees up.
    private var waitingForMemory = false
    private var isClosed = false

    init(server: FileServerContext) {
        self.server = server
        self.connectionID = server.registry.newConnectionID()
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        streamer = ContentStreamer(channel: context.channel, fileIO: server.fileIO,
                                   stallTimeout: server.limits.stalledStreamTimeout)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let clientID { server.registry.unregister(clientID, connectionID: connectionID) }
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

    private var hasRoom: Bool {
        requestsInFlight < server.limits.maximumRequestsInFlight && (context?.channel.isWritable ?? false)
    }

    /// Room for a request whose reply may take `weight` bytes: one request is always allowed.
    private func hasRoom(forReplyOf weight: Int) -> Bool {
        hasRoom && (requestsInFlight == 0 || replyBytesInFlight + weight <= server.limits.maximumQueuedReplyBytes)
    }

    /// The most bytes a request's reply may take: READ's count, a small status otherwise
    /// (FetchData content is streamed under the water mark and is not counted here).
    static func replyWeight(of frame: Frame) -> Int {
        let status = 512
        guard frame.opcode == Opcode.read.rawValue,
              let count = frame.body.getInteger(at: frame.body.readerIndex + 24, as: UInt32.self) else { return status }
        return status + Int(min(count, UInt32(Frame.dataChunkSize)))
    }

    private var mayRead: Bool { backlogStart == backlog.count && hasRoom && !waitingForMemory }

    private func readIfAllowed() {
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
            budget.whenAvailable {
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

    /// Nothing came for `--idle-timeout`: a connection with nothing in flight is closed unless
    /// its client holds callbacks (it must stay reachable for their breaks).
    private func closeIfIdle(context: ChannelHandlerContext) {
        guard requestsInFlight == 0, uploads.isEmpty, backlogStart == backlog.count else { return }
        guard let clientID else {
            server.logger.info("closing idle connection that never said Hello")
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
        do {
            if frame.kind == .pushAck { return try acknowledge(frame) }
            backlog.append(frame)
            handleBacklog()
        } catch {
            errorCaught(context: context, error: error)
        }
    }

    /// Handles the frames at the front of the backlog for which there is room, in order.
    private func handleBacklog() {
        guard let context else { return }
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
        readIfAllowed()
    }

    /// An acknowledgement must name a push still waiting, with that push's opcode.
    private func acknowledge(_ frame: Frame) throws {
        guard let pending = pendingAcks[frame.id] else { return }  // timed out already: harmless
        guard pending.opcode == frame.opcode, frame.body.readableBytes == 0 else {
            throw ProtocolError.invalidValue("acknowledgement of push \(frame.id)")
        }
        pendingAcks[frame.id] = nil
        pending.promise.succeed()
    }

    private func receiveRequest(_ frame: Frame, context: ChannelHandlerContext) throws {
        let (credential, request) = try RequestCodec.decodeWithCredential(opcode: frame.opcode, body: frame.body)
        guard weights[frame.id] == nil else { throw ProtocolError.invalidValue("request id \(frame.id) already in use") }
        let weight = Self.replyWeight(of: frame)
        weights[frame.id] = weight
        replyBytesInFlight += weight
        requestsInFlight += 1
        server.statistics.countRequest(request.opcode)
        if case .hello(let hello) = request {
            return handshake(hello, id: frame.id, context: context)
        }
        guard let clientID, let principal else {
            return sendError(.notIntroduced, id: frame.id, opcode: frame.opcode)
        }
        let identity = server.identityPolicy.identity(for: credential, from: principal)
        if case .storeData(let fid, let size, let mtime) = request {
            return beginUpload(id: frame.id, fid: fid, size: size, mtime: mtime, identity: identity)
        }
        dispatch(id: frame.id, opcode: frame.opcode, client: clientID) { processor in
            try processor.process(request, clientID: clientID, as: identity)
        }
    }

    // MARK: Uploads (StoreData)

    private func beginUpload(id: UInt32, fid: FID, size: UInt64, mtime: Timespec, identity: Identity) {
        let path = server.store.newUploadPath()
        // On failure the data frames are still read (and dropped), then the failure is answered.
        guard size <= server.store.limits.maximumFileSize else {
            uploads[id] = Upload(fid: fid, size: size, mtime: mtime, path: path, identity: identity, failure: .fileTooLarge)
            return
        }
        uploads[id] = Upload(fid: fid, size: size, mtime: mtime, path: path, identity: identity, busy: true)
        onFileIOPool({ UploadFile.create(path) }) { handler, fd in
            handler.uploadStepDone(id) { upload in
                upload.fd = fd
                if fd < 0 { upload.failure = .noSpace }
            }
        }
    }

    private func receiveData(_ frame: Frame) throws {
        guard var upload = uploads[frame.id] else { throw ProtocolError.invalidValue("data for no upload") }
        upload.received += UInt64(frame.body.readableBytes)
        guard upload.received <= upload.size else { throw ProtocolError.invalidValue("more data than announced") }
        let last = frame.isLastChunk
        guard upload.failure == nil, frame.body.readableBytes > 0 else {
            uploads[frame.id] = upload
            if last { finishUpload(frame.id) }
            return
        }
        upload.busy = true
        uploads[frame.id] = upload
        let (fd, body) = (upload.fd, frame.body)
        onFileIOPool({ UploadFile.append(body, to: fd) }) { handler, written in
            handler.uploadStepDone(frame.id) { upload in
                if !written { upload.failure = .noSpace }
            }
            if last { handler.finishUpload(frame.id) }
        }
    }

    private func uploadStepDone(_ id: UInt32, _ update: (inout Upload) -> Void) {
        guard var upload = uploads[id] else { return }
        upload.busy = false
        update(&upload)
        guard !isClosed else {
            uploads[id] = nil
            return discard(upload)
        }
        uploads[id] = upload
        handleBacklog()
    }

    /// Closes and deletes an upload file that will not be stored.
    private func discard(_ upload: Upload) {
        guard upload.fd >= 0 else { return }
        let (fd, path) = (upload.fd, upload.path)
        server.fileIO.submit { _ in UploadFile.discard(fd, path: path) }
    }

    /// The last data frame is in: store the file, or answer why not.
    private func finishUpload(_ id: UInt32) {
        guard let upload = uploads.removeValue(forKey: id), let context else { return }
        let opcode = Opcode.storeData.rawValue
        if upload.failure != nil || upload.received != upload.size {
            discard(upload)
            guard let failure = upload.failure else {
                return errorCaught(context: context, error: ProtocolError.invalidValue("less data than announced"))
            }
            return sendError(failure, id: id, opcode: opcode)
        }
        guard let clientID else { return }
        let (fid, size, mtime, path, fd, identity) = (upload.fid, upload.size, upload.mtime, upload.path, upload.fd, upload.identity)
        onFileIOPool({ UploadFile.finish(fd, path: path) }) { handler, synced in
            guard synced else { return handler.sendError(.noSpace, id: id, opcode: opcode) }
            handler.dispatch(id: id, opcode: opcode, client: clientID) { processor in
                processor.statusOutcome(try processor.store.store(fid, client: .afs(clientID, as: identity), uploadPath: path,
                                                                  size: size, mtime: mtime))
            }
        }
    }

    /// Runs `work` on the file I/O pool, then `then` back on the event loop.
    private func onFileIOPool<T: Sendable>(_ work: @escaping @Sendable () -> T, then: @escaping (ConnectionHandler, T) -> Void) {
        guard let context else { return }
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let continuation = NIOLoopBound(then, eventLoop: context.eventLoop)
        server.fileIO.runIfActive(eventLoop: context.eventLoop) { work() }.whenSuccess { value in
            continuation.value(loopBound.value, value)
        }
    }

    // MARK: Requests

    private func handshake(_ hello: Hello, id: UInt32, context: ChannelHandlerContext) {
        guard hello.version == peachProtocolVersion else {
            return sendError(.versionMismatch, id: id, opcode: Opcode.hello.rawValue)
        }
        guard Self.isValidClientID(hello.clientID) else {
            return sendError(.invalidArgument, id: id, opcode: Opcode.hello.rawValue)
        }
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let store = server.store
        let known = principal
        let (peer, local) = (context.channel.remoteAddress, context.channel.localAddress)
        server.threadPool.runIfActive(eventLoop: context.eventLoop) {
            // A plain connection: who opened it, from the kernel's socket table.
            let principal = known ?? LoopbackPeer.principal(peer: peer, local: local)
            return (try store.introduce(client: hello.clientID, epoch: hello.epoch), principal)
        }.whenComplete { result in
            let handler = loopBound.value
            switch result {
            case .success(let (lost, principal)):
                handler.principal = principal
                handler.server.logger.info("client introduced", metadata: ["client": "\(hello.clientID)", "principal": "\(principal)"])
                handler.clientID = hello.clientID
                handler.server.registry.register(hello.clientID, .init(connectionID: handler.connectionID, handler: loopBound))
                handler.sendReply(.hello(HelloReply(serverEpoch: store.epoch, callBacksLost: lost)), id: id, opcode: Opcode.hello.rawValue)
            case .failure:
                handler.sendError(.ioError, id: id, opcode: Opcode.hello.rawValue)
            }
        }
    }

    /// A client id is a printable token of at most 64 bytes (the cache managers send a UUID).
    static func isValidClientID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 64 && id.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7f }
    }

    /// Runs `work` on the database pool, delivers the breaks it caused, then replies.
    private func dispatch(id: UInt32, opcode: UInt16, client: String,
                          _ work: @escaping @Sendable (RequestProcessor) throws -> Outcome) {
        guard let context else { return }
        let channel = context.channel
        let loopBound = NIOLoopBound(self, eventLoop: channel.eventLoop)
        let processor = server.processor
        let server = self.server
        server.threadPool.runIfActive(eventLoop: channel.eventLoop) {
            try work(processor)
        }.flatMap { outcome -> EventLoopFuture<Outcome> in
            server.breakDelivery.deliver(outcome.breaks, reason: outcome.reason, on: channel.eventLoop).map { outcome }
        }.whenComplete { result in
            let handler = loopBound.value
            switch result {
            case .success(let outcome):
                handler.sendReply(outcome.reply, id: id, opcode: opcode, finishesRequest: outcome.content == nil)
                if let content = outcome.content { handler.stream(content, id: id, opcode: opcode) }
            case .failure(let error as StatusCode):
                handler.sendError(error, id: id, opcode: opcode)
            case .failure(let error as DatabaseError) where error.resultCode == .SQLITE_FULL:
                handler.sendError(.noSpace, id: id, opcode: opcode)
            case .failure(let error):
                server.logger.warning("request failed", metadata: ["opcode": "\(opcode)", "error": "\(error)"])
                handler.sendError(.ioError, id: id, opcode: opcode)
            }
        }
    }

    /// Sends FetchData's content as data frames after its reply.
    private func stream(_ content: VolumeStore.Content, id: UInt32, opcode: UInt16) {
        guard let context else { return }
        let channel = context.channel
        switch content {
        case .bytes(let bytes):
            var offset = 0
            var lastWrite: EventLoopFuture<Void>?
            repeat {
                let end = min(bytes.count, offset + Frame.dataChunkSize)
                let body = channel.allocator.buffer(bytes: bytes[offset..<end])
                offset = end
                lastWrite = channel.write(Frame(kind: .data, flags: offset == bytes.count ? Frame.flagLastChunk : 0,
                                                id: id, opcode: opcode, body: body))
            } while offset < bytes.count
            channel.flush()
            let loopBound = NIOLoopBound(self, eventLoop: channel.eventLoop)
            lastWrite?.whenComplete { _ in loopBound.value.finishRequest(id) }
        case .file(let handle):
            let loopBound = NIOLoopBound(self, eventLoop: channel.eventLoop)
            streamer?.add(handle, id: id, opcode: opcode) { loopBound.value.finishRequest(id) }
        }
    }

    private func finishRequest(_ id: UInt32) {
        requestsInFlight -= 1
        replyBytesInFlight -= weights.removeValue(forKey: id) ?? 0
        handleBacklog()
    }

    func sendReply(_ reply: Reply, id: UInt32, opcode: UInt16, finishesRequest: Bool = true) {
        guard let context else { return }
        var body = context.channel.allocator.buffer(capacity: 128)
        ReplyCodec.encode(reply, into: &body)
        write(Frame(kind: .reply, id: id, opcode: opcode, body: body), finishesRequest: finishesRequest)
    }

    func sendError(_ code: StatusCode, id: UInt32, opcode: UInt16) {
        guard let context else { return }
        var body = context.channel.allocator.buffer(capacity: 2)
        ReplyCodec.encodeError(code, into: &body)
        write(Frame(kind: .reply, id: id, opcode: opcode, body: body), finishesRequest: true)
    }

    private func write(_ frame: Frame, finishesRequest: Bool) {
        guard let context else { return }
        let written = context.channel.writeAndFlush(frame)
        guard finishesRequest else { return }
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let id = frame.id
        written.whenComplete { _ in loopBound.value.finishRequest(id) }
    }

    // MARK: Pushes

    /// Sends a push; the future succeeds when the client acknowledges it and fails after
    /// `timeout` or when the connection closes.
    func push(_ push: Push, timeout: TimeAmount) -> EventLoopFuture<Void> {
        guard let channel = context?.channel, channel.isActive else {
            return server.eventLoopGroup.any().makeFailedFuture(ChannelError.ioOnClosedChannel)
        }
        nextPushID &+= 1
        let pushID = nextPushID
        let promise = channel.eventLoop.makePromise(of: Void.self)
        pendingAcks[pushID] = (push.opcode, promise)
        let loopBound = NIOLoopBound(self, eventLoop: channel.eventLoop)
        let timer = channel.eventLoop.scheduleTask(in: timeout) {
            loopBound.value.pendingAcks.removeValue(forKey: pushID)?.promise.fail(ChannelError.connectTimeout(timeout))
        }
        promise.futureResult.whenComplete { _ in timer.cancel() }
        var body = channel.allocator.buffer(capacity: 64)
        PushCodec.encode(push, into: &body)
        channel.writeAndFlush(Frame(kind: .push, id: pushID, opcode: push.opcode, body: body), promise: nil)
        return promise.futureResult
    }
}
