import Foundation
import GRDB
import NIOCore
import NIOPosix
import PeachProtocol

/// Hello, and every other request: run on the database pool, breaks delivered, reply written,
/// FetchData's content streamed after it.
extension ConnectionHandler {
    func receiveRequest(_ frame: Frame, context: ChannelHandlerContext) throws {
        let (number, credential, request) = try RequestCodec.decode(frame)
        guard inFlight[frame.id] == nil else { throw ProtocolError.invalidValue("request id \(frame.id) already in use") }
        let weight = Self.replyWeight(of: frame)
        inFlight[frame.id] = (weight, request.opcode, .now())
        replyBytesInFlight += weight
        requestsInFlight += 1
        server.statistics.countRequest(request.opcode)
        if case .hello(let hello) = request {
            return handshake(hello, id: frame.id, context: context)
        }
        if case .admin(let query) = request {
            return administer(query, id: frame.id, context: context)
        }
        guard let clientID, let principal else {
            return sendError(.notIntroduced, id: frame.id, opcode: frame.opcode)
        }
        if case .giveUpAllCallBacks = request {
            // From here this connection's client is leaving: no change waits for it once it is
            // gone, and nothing it asks on the way out is promised.
            saidFarewell = true
            server.registry.noteFarewell(clientID, connectionID: connectionID)
        }
        let requester = makeRequester(clientID, principal: principal, credential: credential, number: number)
        if case .storeData(_, let size, _, _, _) = request {
            return beginUpload(request, id: frame.id, size: size, requester: requester)
        }
        let onEventLoop = request.isShort && !server.store.syncPolicy.syncsBeforeReply(request)
        dispatch(id: frame.id, opcode: frame.opcode, isChange: request.isChange, onEventLoop: onEventLoop) { processor in
            try processor.process(request, for: requester)
        }
    }

    /// Who the request comes from and acts as. An AFS-mode client is promised nothing once it
    /// said farewell, or while its principal is suspended (`PromiseSuspensions`).
    private func makeRequester(_ clientID: String, principal: Principal, credential: Credential,
                               number: RequestNumber?) -> Requester {
        var requester = Requester.client(clientID, design: design, as: server.identityPolicy.identity(for: credential, from: principal),
                                         number: number)
        if requester.grantsCallBacks, saidFarewell || server.suspensions.isSuspended(principal.ownerKey) {
            requester.grantsCallBacks = false
        }
        return requester
    }

    func handshake(_ hello: Hello, id: UInt32, context: ChannelHandlerContext) {
        guard hello.version == peachProtocolVersion else {
            server.logger.notice("client refused: protocol version", metadata: [
                "client": "\(hello.clientID)", "version": "\(hello.version)", "expected": "\(peachProtocolVersion)"])
            return sendError(.versionMismatch, id: id, opcode: Opcode.hello.rawValue)
        }
        guard Self.isValidClientID(hello.clientID) else {
            return sendError(.invalidArgument, id: id, opcode: Opcode.hello.rawValue)
        }
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let store = server.store
        let known = principal
        let (peer, local) = (context.channel.remoteAddress, context.channel.localAddress)
        let (registry, maximumIDs) = (server.registry, server.limits.maximumClientIDsPerPrincipal)
        server.threadPool.runIfActive(eventLoop: context.eventLoop) {
            let principal = try known ?? LoopbackPeer.requirePrincipal(peer: peer, local: local)
            // Root on the server's machine is not bounded (it could stop the server anyway), as
            // it is not suspended: `peach bench scale` runs hundreds of clients as root.
            let bound = principal.ownerKey == Principal.localRoot.ownerKey ? Int.max : maximumIDs
            let lost = try store.introduce(client: hello.clientID, epoch: hello.epoch, owner: principal.ownerKey,
                                           maximumIDs: bound, isConnected: { registry.connectionID(for: $0) != nil })
            return (lost, principal)
        }.whenComplete { result in
            let handler = loopBound.value
            switch result {
            case .success(let (lost, principal)):
                handler.principal = principal
                handler.server.logger.info("client introduced", metadata: ["client": "\(hello.clientID)", "principal": "\(principal)",
                                                                          "design": "\(hello.design)"])
                handler.clientID = hello.clientID
                handler.design = hello.design
                handler.saidFarewell = false
                handler.server.registry.register(hello.clientID, .init(connectionID: handler.connectionID, handler: loopBound,
                                                                       name: principal.displayName, address: peer?.ipAddress ?? "-",
                                                                       design: hello.design))
                let lease = UInt32(clamping: handler.server.lease.nanoseconds / 1_000_000)
                handler.sendReply(.hello(HelloReply(serverEpoch: store.epoch, callBacksLost: lost, leaseMilliseconds: lease)),
                                  id: id, opcode: Opcode.hello.rawValue)
            case .failure(let refusal as StatusCode):
                if !handler.refusalLogged {
                    handler.refusalLogged = true
                    handler.server.logger.notice("client refused", metadata: ["client": "\(hello.clientID)", "reason": "\(refusal)",
                                                                              "peer": "\(peer.map { "\($0)" } ?? "-")"])
                }
                handler.sendError(refusal, id: id, opcode: Opcode.hello.rawValue)
            case .failure:
                handler.sendError(.ioError, id: id, opcode: Opcode.hello.rawValue)
            }
        }
    }

    /// A client id is a printable token of at most 64 bytes (the cache managers send a UUID).
    static func isValidClientID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 64 && id.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7f }
    }

    /// Runs `work` on the database pool, delivers the breaks it caused, then replies. A change
    /// during a restored volume's grace period waits for its end first (`startedAfterRestore`).
    /// Runs a request and answers it. A short one (`onEventLoop`) runs right here on the event
    /// loop when no one is writing to the database, and its reply goes out from this thread
    /// (one thread switch per request, where the pool costs three); any other, or a short one
    /// while a writer is busy, runs on the thread pool.
    func dispatch(id: UInt32, opcode: UInt16, isChange: Bool, onEventLoop: Bool = false,
                  _ work: @escaping @Sendable (RequestProcessor) throws -> Outcome) {
        guard let context else { return }
        if isChange, let graceEnds = server.graceEnds, NIODeadline.now() < graceEnds {
            let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
            context.eventLoop.scheduleTask(deadline: graceEnds) { loopBound.value.dispatch(id: id, opcode: opcode, isChange: true, work) }
            return
        }
        let channel = context.channel
        let processor = server.processor
        let server = self.server
        if onEventLoop, let result = server.store.runIfWriterFree({ Result { try work(processor) } }) {
            server.statistics.countAnsweredOnEventLoop()
            return answer(result, id: id, opcode: opcode, on: channel)
        }
        let loopBound = NIOLoopBound(self, eventLoop: channel.eventLoop)
        server.threadPool.runIfActive(eventLoop: channel.eventLoop) {
            try work(processor)
        }.whenComplete { result in loopBound.value.answer(result, id: id, opcode: opcode, on: channel) }
    }

    /// Delivers the breaks an outcome made, then sends its reply (and content), or the error.
    private func answer(_ outcome: Result<Outcome, Error>, id: UInt32, opcode: UInt16, on channel: Channel) {
        let loopBound = NIOLoopBound(self, eventLoop: channel.eventLoop)
        let server = self.server
        let delivered: EventLoopFuture<Outcome> = switch outcome {
        case .success(let outcome) where outcome.breaks.isEmpty: channel.eventLoop.makeSucceededFuture(outcome)
        case .success(let outcome):
            server.breakDelivery.deliver(outcome.breaks, reason: outcome.reason, on: channel.eventLoop).map { outcome }
        case .failure(let error): channel.eventLoop.makeFailedFuture(error)
        }
        delivered.whenComplete { result in
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
    func stream(_ content: VolumeStore.Content, id: UInt32, opcode: UInt16) {
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
        case .file(let handle, let length):
            let loopBound = NIOLoopBound(self, eventLoop: channel.eventLoop)
            streamer?.add(handle, length: length, id: id, opcode: opcode) { loopBound.value.finishRequest(id) }
        }
    }

    func finishRequest(_ id: UInt32) {
        requestsInFlight -= 1
        if let request = inFlight.removeValue(forKey: id) {
            replyBytesInFlight -= request.weight
            server.store.metrics.requestAnswered(request.opcode, after: (NIODeadline.now() - request.arrival).nanoseconds)
        }
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

    func write(_ frame: Frame, finishesRequest: Bool) {
        guard let context else { return }
        let written = context.channel.writeAndFlush(frame)
        guard finishesRequest else { return }
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let id = frame.id
        written.whenComplete { _ in loopBound.value.finishRequest(id) }
    }
}

extension Request {
    /// A request whose work is a few short SQLite statements and no file I/O, which an event
    /// loop may run itself (`ConnectionHandler.dispatch`). Not: anything that reads or writes a
    /// file's content, a READDIR (it reads the whole directory), a size change (it may copy a
    /// file), GetVolumeStatus (it counts every vnode), GiveUpCallBacks and GiveUpAllCallBacks (a
    /// peer may name 300,000 FIDs in one frame, or hold as many promises, each a row to delete: the
    /// loop's other connections would wait for them all).
    var isShort: Bool {
        switch self {
        case .storeStatus(_, let attributes): attributes.size == nil
        case .fetchStatus, .bulkStatus, .createFile, .makeDir, .symlink, .link, .removeFile, .removeDir, .rename,
             .lookup, .readlink, .ping:
            true
        case .hello, .fetchData, .storeData, .getVolumeStatus, .read, .write, .commit, .readDir, .giveUpCallBacks, .giveUpAllCallBacks, .admin:
            false
        }
    }
}
