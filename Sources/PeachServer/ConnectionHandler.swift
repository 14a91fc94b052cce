import Foundation
import GRDB
import Logging
import NIOCore
import NIOPosix
import PeachProtocol

/// One cache manager's connection: requests in, replies and callback breaks out.
///
/// All state lives on the channel's event loop. SQLite work goes to the server's thread pool;
/// replies to mutations wait until the breaks they caused are acknowledged (see `BreakDelivery`).
final class ConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = Frame
    typealias OutboundOut = Frame

    /// A StoreData whose data frames are still arriving.
    private struct Upload {
        var fid: FID
        var size: UInt64
        var mtime: Timespec
        var path: String
        /// -1 when the upload file could not be created: the data is read and dropped.
        var fd: Int32
        var received: UInt64 = 0
        /// Why the store fails once its data frames are in (they are read and dropped first):
        /// the upload file could not be created or written, or the size is over the limit.
        var failure: StatusCode?
    }

    private let server: FileServerContext
    let connectionID: UInt64
    private var clientID: String?
    private var uploads: [UInt32: Upload] = [:]
    /// Pushes sent and not yet acknowledged, with the opcode the acknowledgement must carry.
    private var pendingAcks: [UInt32: (opcode: UInt16, promise: EventLoopPromise<Void>)] = [:]
    private var nextPushID: UInt32 = 0
    private var channel: Channel?

    init(server: FileServerContext) {
        self.server = server
        self.connectionID = server.registry.newConnectionID()
    }

    func channelActive(context: ChannelHandlerContext) {
        channel = context.channel
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let clientID { server.registry.unregister(clientID, connectionID: connectionID) }
        for (_, upload) in uploads where upload.fd >= 0 {
            close(upload.fd)
            unlink(upload.path)
        }
        uploads = [:]
        let acks = pendingAcks
        pendingAcks = [:]
        for (_, ack) in acks { ack.promise.fail(ChannelError.ioOnClosedChannel) }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        server.logger.info("closing connection", metadata: ["client": "\(clientID ?? "-")", "error": "\(error)"])
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        do {
            switch frame.kind {
            case .request:
                try receiveRequest(frame, context: context)
            case .data:
                try receiveData(frame, context: context)
            case .pushAck:
                try acknowledge(frame)
            case .reply, .push:
                throw ProtocolError.unknownFrameKind(frame.kind.rawValue)
            }
        } catch {
            errorCaught(context: context, error: error)
        }
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
        let request = try RequestCodec.decode(opcode: frame.opcode, body: frame.body)
        server.statistics.countRequest(request.opcode)
        if case .hello(let hello) = request {
            return handshake(hello, id: frame.id, context: context)
        }
        guard let clientID else {
            return sendError(.notIntroduced, id: frame.id, opcode: frame.opcode)
        }
        if case .storeData(let fid, let size, let mtime) = request {
            guard uploads[frame.id] == nil else { throw ProtocolError.invalidValue("duplicate request id") }
            let path = server.store.newUploadPath()
            // On failure the data frames are still read (and dropped), then the failure is answered.
            guard size <= server.store.limits.maximumFileSize else {
                uploads[frame.id] = Upload(fid: fid, size: size, mtime: mtime, path: path, fd: -1, failure: .fileTooLarge)
                return
            }
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            uploads[frame.id] = Upload(fid: fid, size: size, mtime: mtime, path: path, fd: fd, failure: fd < 0 ? .noSpace : nil)
            return
        }
        dispatch(id: frame.id, opcode: frame.opcode, client: clientID) { processor in
            try processor.process(request, clientID: clientID)
        }
    }

    private func receiveData(_ frame: Frame, context: ChannelHandlerContext) throws {
        guard var upload = uploads[frame.id] else { throw ProtocolError.invalidValue("data for no upload") }
        upload.received += UInt64(frame.body.readableBytes)
        guard upload.received <= upload.size else { throw ProtocolError.invalidValue("more data than announced") }
        if upload.failure == nil {
            let written = frame.body.withUnsafeReadableBytes { bytes in
                bytes.isEmpty ? 0 : write(upload.fd, bytes.baseAddress, bytes.count)
            }
            if written != frame.body.readableBytes { upload.failure = .noSpace }
        }
        uploads[frame.id] = upload
        guard frame.isLastChunk else { return }
        uploads[frame.id] = nil
        if upload.failure != nil || upload.received != upload.size, upload.fd >= 0 {
            close(upload.fd)
            unlink(upload.path)
        }
        if let failure = upload.failure { return sendError(failure, id: frame.id, opcode: Opcode.storeData.rawValue) }
        guard upload.received == upload.size else { throw ProtocolError.invalidValue("less data than announced") }
        guard let clientID else { return }
        let (fid, size, mtime, path, fd) = (upload.fid, upload.size, upload.mtime, upload.path, upload.fd)
        dispatch(id: frame.id, opcode: Opcode.storeData.rawValue, client: clientID) { processor in
            // The fsync runs here on the pool: on the event loop it would hold up every other
            // connection's frames, acknowledgements of breaks among them.
            let synced = fsync(fd) == 0
            close(fd)
            guard synced else {
                unlink(path)
                throw StatusCode.noSpace
            }
            return processor.statusOutcome(try processor.store.store(fid, client: .afs(clientID), uploadPath: path, size: size, mtime: mtime))
        }
    }

    private func handshake(_ hello: Hello, id: UInt32, context: ChannelHandlerContext) {
        guard hello.version == peachProtocolVersion else {
            return sendError(.versionMismatch, id: id, opcode: Opcode.hello.rawValue)
        }
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let store = server.store
        server.threadPool.runIfActive(eventLoop: context.eventLoop) {
            try store.introduce(client: hello.clientID, epoch: hello.epoch)
        }.whenComplete { result in
            let handler = loopBound.value
            switch result {
            case .success(let lost):
                handler.clientID = hello.clientID
                handler.server.registry.register(hello.clientID, .init(connectionID: handler.connectionID, handler: loopBound))
                handler.sendReply(.hello(HelloReply(serverEpoch: store.epoch, callBacksLost: lost)), id: id, opcode: Opcode.hello.rawValue)
            case .failure:
                handler.sendError(.ioError, id: id, opcode: Opcode.hello.rawValue)
            }
        }
    }

    /// Runs `work` on the thread pool, delivers the breaks it caused, then replies.
    private func dispatch(id: UInt32, opcode: UInt16, client: String,
                          _ work: @escaping @Sendable (RequestProcessor) throws -> Outcome) {
        guard let channel else { return }
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
                handler.sendReply(outcome.reply, id: id, opcode: opcode)
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

    /// Sends FetchData's content as data frames. A file is read on the thread pool, at most a few
    /// chunks ahead of the socket.
    private func stream(_ content: VolumeStore.Content, id: UInt32, opcode: UInt16) {
        guard let channel else { return }
        switch content {
        case .bytes(let bytes):
            var offset = 0
            repeat {
                let end = min(bytes.count, offset + Frame.dataChunkSize)
                let body = channel.allocator.buffer(bytes: bytes[offset..<end])
                offset = end
                channel.write(Frame(kind: .data, flags: offset == bytes.count ? Frame.flagLastChunk : 0,
                                    id: id, opcode: opcode, body: body), promise: nil)
            } while offset < bytes.count
            channel.flush()
        case .file(let handle):
            let logger = server.logger
            server.threadPool.submit { _ in
                defer { try? handle.close() }
                do {
                    try FileStreamer.send(fd: handle.fileDescriptor, id: id, opcode: opcode, on: channel)
                } catch {
                    logger.warning("fetch stream failed", metadata: ["error": "\(error)"])
                    channel.close(promise: nil)
                }
            }
        }
    }

    func sendReply(_ reply: Reply, id: UInt32, opcode: UInt16) {
        guard let channel else { return }
        var body = channel.allocator.buffer(capacity: 128)
        ReplyCodec.encode(reply, into: &body)
        channel.writeAndFlush(Frame(kind: .reply, id: id, opcode: opcode, body: body), promise: nil)
    }

    func sendError(_ code: StatusCode, id: UInt32, opcode: UInt16) {
        guard let channel else { return }
        var body = channel.allocator.buffer(capacity: 2)
        ReplyCodec.encodeError(code, into: &body)
        channel.writeAndFlush(Frame(kind: .reply, id: id, opcode: opcode, body: body), promise: nil)
    }

    /// Sends a push; the future succeeds when the client acknowledges it and fails after
    /// `timeout` or when the connection closes.
    func push(_ push: Push, timeout: TimeAmount) -> EventLoopFuture<Void> {
        guard let channel, channel.isActive else {
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
