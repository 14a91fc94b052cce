import Foundation
import GRDB
import NIOCore
import NIOPosix
import PeachProtocol

/// CallBack and InitCallBackState pushes, and the acknowledgements they wait for.
extension ConnectionHandler {
    /// Sends a push; the future succeeds when the client acknowledges it and fails after
    /// `timeout`, when the connection closes, or, with `lease`, once the client has been silent
    /// for a lease (it then trusts no callback any more: no need to wait for the rest of `timeout`).
    func push(_ push: Push, timeout: TimeAmount, lease: TimeAmount? = nil) -> EventLoopFuture<Void> {
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
        if let lease { watchLease(of: pushID, lease: lease, on: channel.eventLoop) }
        var body = channel.allocator.buffer(capacity: 64)
        PushCodec.encode(push, into: &body)
        channel.writeAndFlush(Frame(kind: .push, id: pushID, opcode: push.opcode, body: body), promise: nil)
        return promise.futureResult
    }

    /// Fails the push `pushID` once nothing has come from the client for `lease`, checking again
    /// whenever something came meanwhile.
    private func watchLease(of pushID: UInt32, lease: TimeAmount, on eventLoop: EventLoop) {
        let loopBound = NIOLoopBound(self, eventLoop: eventLoop)
        eventLoop.scheduleTask(deadline: lastContact + lease) {
            let handler = loopBound.value
            guard handler.pendingAcks[pushID] != nil else { return }
            if handler.lastContact + lease <= .now() {
                handler.pendingAcks.removeValue(forKey: pushID)?.promise.fail(ChannelError.connectTimeout(lease))
            } else {
                handler.watchLease(of: pushID, lease: lease, on: eventLoop)
            }
        }
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
