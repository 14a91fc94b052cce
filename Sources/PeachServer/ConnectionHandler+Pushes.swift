import Foundation
import GRDB
import NIOCore
import NIOPosix
import PeachProtocol

/// CallBack and InitCallBackState pushes, and the acknowledgements they wait for.
extension ConnectionHandler {
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

    /// An acknowledgement must name a push still waiting, with that push's opcode.
    func acknowledge(_ frame: Frame) throws {
        guard let pending = pendingAcks[frame.id] else { return }  // timed out already: harmless
        guard pending.opcode == frame.opcode, frame.body.readableBytes == 0 else {
            throw ProtocolError.invalidValue("acknowledgement of push \(frame.id)")
        }
        pendingAcks[frame.id] = nil
        pending.promise.succeed()
    }
}
