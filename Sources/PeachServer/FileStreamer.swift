import Foundation
import NIOCore
import PeachProtocol

/// Reads a file in chunks and writes them as data frames, keeping a bounded number in flight so
/// a large file never sits in memory whole.
enum FileStreamer {
    static let chunksInFlight = 4
    /// A client that takes no data for this long loses its connection, and the pool thread
    /// streaming to it is freed.
    static let stallTimeout: TimeAmount = .seconds(60)

    static func send(fd: Int32, id: UInt32, opcode: UInt16, on channel: Channel) throws {
        var inFlight: [EventLoopFuture<Void>] = []
        var sentLast = false
        while !sentLast {
            var buffer = channel.allocator.buffer(capacity: Frame.dataChunkSize)
            let count = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: Frame.dataChunkSize) { raw in
                let n = read(fd, raw.baseAddress, Frame.dataChunkSize)
                if n < 0 { throw StatusCode.ioError }
                return n
            }
            sentLast = count == 0 || count < Frame.dataChunkSize
            // A short read is the end of an immutable version file; a full chunk may be followed
            // by an empty last one.
            let frame = Frame(kind: .data, flags: sentLast ? Frame.flagLastChunk : 0, id: id, opcode: opcode, body: buffer)
            inFlight.append(channel.writeAndFlush(frame))
            if inFlight.count >= chunksInFlight {
                try waitOrClose(inFlight.removeFirst(), channel)
            }
        }
        for future in inFlight { try waitOrClose(future, channel) }
    }

    private static func waitOrClose(_ write: EventLoopFuture<Void>, _ channel: Channel) throws {
        let watchdog = channel.eventLoop.scheduleTask(in: stallTimeout) { channel.close(promise: nil) }
        defer { watchdog.cancel() }
        try write.wait()
    }
}
