import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOSSL
import PeachProtocol
import Testing
@testable import PeachClient

/// The connection's request table on its own, driven through NIO's embedded channel: the order
/// of a close and a request there is a race on a real socket.
@Suite("Requests on a closed connection")
struct RPCHandlerCloseTests {
    /// The failure the promise was already completed with (an embedded channel runs callbacks
    /// at once).
    func failure(of promise: EventLoopPromise<Reply>) -> FileSystemError? {
        let seen = NIOLockedValueBox<FileSystemError?>(nil)
        promise.futureResult.whenFailure { error in seen.withLockedValue { $0 = error as? FileSystemError } }
        return seen.withLockedValue { $0 }
    }

    @Test("a request made after a TLS refusal closed the connection fails with the refusal, not 'connection closed'")
    func requestAfterTLSRefusal() throws {
        let handler = RPCHandler(onPush: { _, _ in }, onClose: {})
        let channel = EmbeddedChannel(handler: handler)
        // What NIOSSL fires when the server's alert arrives; then the connection closes.
        channel.pipeline.fireErrorCaught(NIOSSLExtraError.failedToValidateHostname)
        #expect(!channel.isActive)
        // The Hello, registered only now (CI saw this order once in a few dozen runs under load).
        let hello = channel.eventLoop.makePromise(of: Reply.self)
        handler.register(id: 1, RPCHandler.Pending(opcode: Opcode.hello.rawValue, promise: hello))
        let error = failure(of: hello)
        #expect(error?.reason == "the server's certificate does not name the address connected to")
        #expect(error?.serverUnreachable == false, "a refusal is an answer: a hard mount must not retry it")
    }

    @Test("requests pending or made after a plain close fail as a lost server, which a hard mount retries")
    func requestAfterPlainClose() throws {
        let handler = RPCHandler(onPush: { _, _ in }, onClose: {})
        let channel = EmbeddedChannel(handler: handler)
        let pending = channel.eventLoop.makePromise(of: Reply.self)
        handler.register(id: 1, RPCHandler.Pending(opcode: Opcode.fetchStatus.rawValue, promise: pending))
        _ = try channel.close().wait()
        let late = channel.eventLoop.makePromise(of: Reply.self)
        handler.register(id: 2, RPCHandler.Pending(opcode: Opcode.fetchStatus.rawValue, promise: late))
        for promise in [pending, late] {
            let error = failure(of: promise)
            #expect(error?.reason == RPCHandler.closedReason)
            #expect(error?.serverUnreachable == true)
        }
    }
}
