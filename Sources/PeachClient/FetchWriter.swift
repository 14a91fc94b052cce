import Dispatch
import Glibc
import NIOConcurrencyHelpers
import NIOCore

/// Writes a FetchData's chunks into the cache file on a queue of its own, never on the
/// connection's event loop, which must stay free to acknowledge callback breaks whatever the
/// disk does. Reading from the connection pauses while more than `maximumQueuedBytes` wait for
/// the disk, and resumes once they drain to a quarter of that.
final class FetchWriter: Sendable {
    static let maximumQueuedBytes = 32 << 20

    private struct State {
        var nextOffset: UInt64 = 0
        var queuedBytes = 0
        var paused = false
        var error: FileSystemError?
    }

    private let fd: Int32
    private let channel: Channel
    private let queue = DispatchQueue(label: "peach.fetch-writer")
    private let state = NIOLockedValueBox(State())

    init(fd: Int32, channel: Channel) {
        self.fd = fd
        self.channel = channel
    }

    /// Called on the event loop with each data frame's body, in order.
    func accept(_ chunk: ByteBuffer) {
        let count = chunk.readableBytes
        let (offset, pause) = state.withLockedValue { s -> (UInt64, Bool) in
            let offset = s.nextOffset
            s.nextOffset += UInt64(count)
            s.queuedBytes += count
            let pause = !s.paused && s.queuedBytes > Self.maximumQueuedBytes
            if pause { s.paused = true }
            return (offset, pause)
        }
        if pause { channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in } }
        queue.async { [self] in
            let failure = state.withLockedValue { $0.error } == nil ? write(chunk, at: offset) : nil
            let resume = state.withLockedValue { s -> Bool in
                s.queuedBytes -= count
                if let failure, s.error == nil { s.error = failure }
                guard s.paused, s.queuedBytes <= Self.maximumQueuedBytes / 4 else { return false }
                s.paused = false
                return true
            }
            if resume { channel.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in } }
        }
    }

    private func write(_ chunk: ByteBuffer, at offset: UInt64) -> FileSystemError? {
        chunk.withUnsafeReadableBytes { bytes in
            var done = 0
            while done < bytes.count {
                let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { return FileSystemError(n < 0 ? errno : EIO, "writing the cache") }
                done += n
            }
            return nil
        }
    }

    /// Waits until every accepted chunk is written (call it before closing `fd`, whatever the
    /// fetch's outcome); returns the bytes written, or throws the first write failure.
    func finish() throws -> UInt64 {
        queue.sync {}
        let (written, error) = state.withLockedValue { ($0.nextOffset, $0.error) }
        if let error { throw error }
        return written
    }
}
