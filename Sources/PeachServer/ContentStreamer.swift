import Foundation
import NIOCore
import NIOPosix
import PeachProtocol

/// Sends FetchData content of one connection as data frames.
///
/// No thread ever waits on the client: a chunk is read on the file I/O pool only while the
/// channel is writable (its queued bytes under the high-water mark), written, and the next one
/// read once the pool answers. Streams of one connection take turns chunk by chunk, so a large
/// file does not hold up a small one behind it. Memory per connection is one chunk plus the
/// water mark, however many fetches the client leaves unread. Event-loop only.
final class ContentStreamer {
    static let chunkSize = Frame.dataChunkSize

    private struct Stream {
        var id: UInt32
        var opcode: UInt16
        var fd: Int32
        /// Bytes still to send.
        var remaining: UInt64
        var finished: () -> Void
    }

    private let channel: Channel
    private let fileIO: NIOThreadPool
    private let stallTimeout: TimeAmount
    private var waiting: [Stream] = []
    private var reading: Stream?
    private var stallTimer: Scheduled<Void>?
    private var closed = false

    init(channel: Channel, fileIO: NIOThreadPool, stallTimeout: TimeAmount) {
        self.channel = channel
        self.fileIO = fileIO
        self.stallTimeout = stallTimeout
    }

    /// Streams `length` bytes of `handle`'s content from its position (taking ownership of it);
    /// `finished` runs once the last chunk is written.
    func add(_ handle: FileHandle, length: UInt64, id: UInt32, opcode: UInt16, finished: @escaping () -> Void) {
        let fd = dup(handle.fileDescriptor)
        try? handle.close()
        guard fd >= 0, !closed else {
            if fd >= 0 { close(fd) }
            return channel.close(promise: nil)
        }
        waiting.append(Stream(id: id, opcode: opcode, fd: fd, remaining: length, finished: finished))
        pump()
    }

    /// The channel's writability changed.
    func writabilityChanged() { pump() }

    /// The connection closed: every descriptor goes.
    func closeAll() {
        closed = true
        stallTimer?.cancel()
        for stream in waiting { close(stream.fd) }
        waiting = []
    }

    private func pump() {
        channel.eventLoop.assertInEventLoop()
        guard !closed, reading == nil, !waiting.isEmpty else { return }
        guard channel.isWritable else { return watchForStall() }
        stallTimer?.cancel()
        stallTimer = nil
        let stream = waiting.removeFirst()
        reading = stream
        let fd = stream.fd
        let want = Int(min(UInt64(Self.chunkSize), stream.remaining))
        let loopBound = NIOLoopBound(self, eventLoop: channel.eventLoop)
        fileIO.runIfActive(eventLoop: channel.eventLoop) { () throws -> ByteBuffer in
            var buffer = ByteBufferAllocator().buffer(capacity: want)
            _ = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: want) { raw in
                var total = 0
                while total < want {
                    let n = read(fd, raw.baseAddress! + total, want - total)
                    if n < 0 && errno == EINTR { continue }
                    if n < 0 { throw StatusCode.ioError }
                    if n == 0 { break }
                    total += n
                }
                return total
            }
            return buffer
        }.whenComplete { result in
            loopBound.value.chunkRead(result)
        }
    }

    private func chunkRead(_ result: Result<ByteBuffer, Error>) {
        guard var stream = reading else { return }
        reading = nil
        guard !closed, case .success(let buffer) = result else {
            close(stream.fd)
            if !closed { channel.close(promise: nil) }
            return
        }
        // The range is sent, or a short chunk met the end of the immutable version file; a
        // full chunk may be followed by an empty last one.
        stream.remaining -= UInt64(buffer.readableBytes)
        let last = stream.remaining == 0 || buffer.readableBytes < Self.chunkSize
        channel.writeAndFlush(Frame(kind: .data, flags: last ? Frame.flagLastChunk : 0, id: stream.id, opcode: stream.opcode,
                                    body: buffer), promise: nil)
        if last {
            close(stream.fd)
            stream.finished()
        } else {
            waiting.append(stream)
        }
        pump()
    }

    /// A client that takes no data for `stallTimeout` while fetches wait loses its connection.
    private func watchForStall() {
        guard stallTimer == nil else { return }
        let channel = self.channel
        stallTimer = channel.eventLoop.scheduleTask(in: stallTimeout) {
            if !channel.isWritable { channel.close(promise: nil) }
        }
    }
}
