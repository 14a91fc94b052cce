import Foundation
import NIOCore
import PeachProtocol
import PeachSecurity

/// The client end of the connection, on its event loop: matches replies to requests, feeds data
/// frames to the request that streams them, and hands server pushes to the cache manager.
final class RPCHandler: ChannelInboundHandler {
    typealias InboundIn = Frame
    typealias OutboundOut = Frame

    /// A request waiting for its reply (and, for FetchData, its data frames).
    struct Pending {
        var opcode: UInt16
        var promise: EventLoopPromise<Reply>
        /// Receives FetchData's data frames; the promise completes after the last one.
        var sink: (@Sendable (ByteBuffer) throws -> Void)?
        var reply: Reply?
        var sinkError: Error?
    }

    private var pending: [UInt32: Pending] = [:]
    static let closedReason = "connection to the server closed"
    /// The error that closed the connection, if one did: a TLS refusal arrives this way.
    private var closingError: Error?
    private let onPush: @Sendable (Push, _ ack: @escaping @Sendable () -> Void) -> Void
    private let onClose: @Sendable () -> Void

    init(onPush: @escaping @Sendable (Push, @escaping @Sendable () -> Void) -> Void, onClose: @escaping @Sendable () -> Void) {
        self.onPush = onPush
        self.onClose = onClose
    }

    func register(id: UInt32, _ call: Pending) {
        // Registered after the connection closed (the caller raced the close): it fails now,
        // rather than wait for its timeout with a promise no one will complete, and with the
        // close's reason: a TLS refusal can arrive before the first request (Hello) is registered.
        guard !isClosed else { return call.promise.fail(closedError) }
        pending[id] = call
    }

    /// Set once the connection has closed: nothing more will arrive.
    private var isClosed = false

    /// Fails and forgets a call (timed out); frames that still arrive for it are dropped.
    func cancel(id: UInt32, _ error: Error) {
        guard let call = pending.removeValue(forKey: id) else { return }
        cancelled.insert(id)
        call.promise.fail(error)
    }

    /// Ids of cancelled calls whose reply or data may still come.
    private var cancelled: Set<UInt32> = []

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        do {
            switch frame.kind {
            case .reply where cancelled.contains(frame.id):
                // FetchData's (and a backup's) data frames may still follow its reply.
                if frame.opcode != Opcode.fetchData.rawValue && frame.opcode != Opcode.admin.rawValue { cancelled.remove(frame.id) }
            case .data where cancelled.contains(frame.id):
                if frame.isLastChunk { cancelled.remove(frame.id) }
            case .reply:
                guard var call = pending[frame.id], call.opcode == frame.opcode else {
                    throw ProtocolError.invalidValue("reply to no request")
                }
                switch try ReplyCodec.decode(opcode: frame.opcode, body: frame.body) {
                case .failure(let code):
                    pending[frame.id] = nil
                    call.promise.fail(code)
                case .success(let reply):
                    if call.sink != nil, reply.isFollowedByData {
                        call.reply = reply
                        pending[frame.id] = call
                    } else {
                        pending[frame.id] = nil
                        call.promise.succeed(reply)
                    }
                }
            case .data:
                guard var call = pending[frame.id], let sink = call.sink, let reply = call.reply else {
                    throw ProtocolError.invalidValue("data for no request")
                }
                if call.sinkError == nil {
                    // A local failure (disk full) fails this fetch once its last frame arrives.
                    do { try sink(frame.body) } catch { call.sinkError = error }
                }
                if frame.isLastChunk {
                    pending[frame.id] = nil
                    if let error = call.sinkError { call.promise.fail(error) } else { call.promise.succeed(reply) }
                } else {
                    pending[frame.id] = call
                }
            case .push:
                let push = try PushCodec.decode(opcode: frame.opcode, body: frame.body)
                let channel = context.channel
                let id = frame.id
                onPush(push) {
                    channel.writeAndFlush(Frame(kind: .pushAck, id: id, opcode: frame.opcode, body: ByteBuffer()), promise: nil)
                }
            case .request, .pushAck:
                throw ProtocolError.unknownFrameKind(frame.kind.rawValue)
            }
        } catch {
            context.fireErrorCaught(error)
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        isClosed = true
        let calls = pending
        pending = [:]
        let error = closedError
        for (_, call) in calls { call.promise.fail(error) }
        onClose()
        context.fireChannelInactive()
    }

    /// What a call on the closed connection fails with. A TLS refusal is an answer (retrying will
    /// not help); anything else, a lost server.
    private var closedError: FileSystemError {
        closingError.flatMap(TLSFailure.describe).map { FileSystemError(EIO, $0) } ?? .unreachable(EIO, Self.closedReason)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if closingError == nil { closingError = error }
        context.close(promise: nil)
    }
}
