import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import PeachProtocol
import PeachSecurity
import PeachSupport

/// Retries, request numbering, and the one way a request goes out and its reply comes back.
extension ServerConnection {
    // MARK: Retries

    /// From now on, no call waits longer than `grace` and none is retried: unmounting must not
    /// wait for a server that is away.
    public func beginShutdown(within grace: TimeAmount) {
        shutdownDeadline.withLockedValue { $0 = .now() + grace }
    }

    /// Requests whose repetition could do something twice: they are numbered, so that the server
    /// answers a repeat from its record (`RequestNumber`).
    static func isIdempotent(_ request: Request) -> Bool {
        switch request {
        case .createFile, .makeDir, .symlink, .link, .removeFile, .removeDir, .rename: false
        case .storeData(_, _, _, _, let baseVersion): baseVersion == nil
        default: true
        }
    }

    /// Runs `attempt` (connect, send, wait), again after each failure to reach the server, as
    /// the retry policy allows.
    func withRetries<T>(_ request: Request,
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
    func attemptDeadline(started: NIODeadline) -> NIODeadline {
        var deadline = NIODeadline.now() + callTimeout
        if case .soft(let limit) = retry { deadline = min(deadline, max(started + limit, .now() + .milliseconds(100))) }
        if let shutdown = shutdownDeadline.withLockedValue({ $0 }) { deadline = min(deadline, max(shutdown, .now() + .milliseconds(10))) }
        return deadline
    }

    /// Sleeps `pause` in short steps, giving up at once if the caller was interrupted or the
    /// mount is going away.
    func waitBeforeRetry(_ pause: TimeAmount, started: NIODeadline) throws {
        let end = NIODeadline.now() + pause
        repeat {
            if Caller.isInterrupted { throw FileSystemError(EINTR, "interrupted while the file server was away") }
            if shutdownDeadline.withLockedValue({ $0 }) != nil { throw FileSystemError.unreachable(EIO, "unmounting") }
            usleep(20_000)
        } while NIODeadline.now() < end
    }

    /// Sends a request and waits for its reply until `deadline`; `sink` receives FetchData's
    /// data frames and `upload` writes StoreData's.
    func send(_ request: Request, on channel: Channel, handler: NIOLoopBound<RPCHandler>, until deadline: NIODeadline? = nil,
                      number: RequestNumber? = nil, sink: (@Sendable (ByteBuffer) throws -> Void)? = nil,
                      upload: ((Channel, UInt32) throws -> Void)? = nil, data: ByteBuffer? = nil) throws -> Reply {
        statistics.countRequest(request.opcode)
        let id = newID()
        let frame = Self.frame(request, id: id, number: number, credential: Caller.credential, allocator: channel.allocator)
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
            // A small store's whole content, read before the hop: its one data frame goes out with
            // the request, and nothing waits for the write (a failed write closes the connection,
            // which fails the call).
            let dataFrame = data.map { Frame(kind: .data, flags: Frame.flagLastChunk, id: id, opcode: opcode, body: $0) }
            Self.start(frame, then: dataFrame, on: channel, handler: handler, sink: sink, until: limit,
                       timedOut: FileSystemError.unreachable(ETIMEDOUT, "the file server did not answer"),
                       closingOnTimeout: true, completion: answer.complete)
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

    /// On the connection's event loop: registers the call `frame` starts, arms its timeout at
    /// `limit` (which fails it with `timedOut`, forgets it so that late data frames go nowhere,
    /// and with `closingOnTimeout` drops the connection, whose server does not answer), writes
    /// `frame` and `dataFrame`, and hands the reply to `completion`. Calls from a thread (`send`)
    /// and the pinger, which runs on the loop, both start here.
    static func start(_ frame: Frame, then dataFrame: Frame? = nil, on channel: Channel, handler: NIOLoopBound<RPCHandler>,
                      sink: (@Sendable (ByteBuffer) throws -> Void)?, until limit: NIODeadline, timedOut: Error,
                      closingOnTimeout: Bool, completion: @escaping @Sendable (Result<Reply, Error>) -> Void) {
        let promise = channel.eventLoop.makePromise(of: Reply.self)
        handler.value.register(id: frame.id, .init(opcode: frame.opcode, promise: promise, sink: sink))
        let timeout = channel.eventLoop.scheduleTask(deadline: limit) {
            handler.value.cancel(id: frame.id, timedOut)
            if closingOnTimeout { channel.close(promise: nil) }
        }
        promise.futureResult.whenComplete { result in
            timeout.cancel()
            completion(result)
        }
        if let dataFrame {
            channel.write(frame, promise: nil)
            channel.writeAndFlush(dataFrame, promise: nil)
        } else {
            channel.writeAndFlush(frame, promise: nil)
        }
    }

    /// A request's frame: its number (if any), then the caller's credential and the request.
    static func frame(_ request: Request, id: UInt32, number: RequestNumber?, credential: Credential, allocator: ByteBufferAllocator) -> Frame {
        var body = allocator.buffer(capacity: 64)
        number?.write(into: &body)
        RequestCodec.encode(request, credential: credential, into: &body)
        return Frame(kind: .request, flags: number == nil ? 0 : Frame.flagNumbered, id: id, opcode: request.opcode.rawValue, body: body)
    }

    public func call(_ request: Request) throws -> Reply {
        try withRetries(request) { channel, handler, deadline, number in
            try send(request, on: channel, handler: handler, until: deadline, number: number)
        }
    }
}

/// The reply to one request, handed from the event loop to the thread that waits for it.
final class ReplyWaiter: @unchecked Sendable {
    let ready = DispatchSemaphore(value: 0)
    /// Written once, before `ready` is signalled; read after it is waited for.
    var result: Result<Reply, Error>?

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
