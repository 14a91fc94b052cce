import Dispatch
import Glibc
import NIOCore
import PeachSupport
import Synchronization

/// Writes a fetch's chunks into the cache file on a queue of its own, never on the connection's
/// event loop, which must stay free to acknowledge callback breaks whatever the disk does.
///
/// The connection is never paused for the disk either: a paused connection would leave a break
/// unread behind the data. What waits for a slow disk is bounded instead by asking the server for
/// no more than the disk has room for (`ServerConnection.fetchData(_:into:)` asks in windows and
/// calls `waitUntilQueued` before each).
final class FetchWriter: Sendable {
    private struct State {
        var nextOffset: UInt64 = 0
        var queuedBytes = 0
        var error: FileSystemError?
        /// The fetching thread waits until `queuedBytes` falls to this.
        var waitingFor: Int?
    }

    private let fd: Int32
    private let queue = DispatchQueue(label: "peach.fetch-writer")
    private let state = Mutex(State())
    private let drained = DispatchSemaphore(value: 0)

    init(fd: Int32) {
        self.fd = fd
    }

    /// Called on the event loop with each data frame's body, in order.
    func accept(_ chunk: ByteBuffer) {
        let count = chunk.readableBytes
        let offset = state.withLock { s -> UInt64 in
            let offset = s.nextOffset
            s.nextOffset += UInt64(count)
            s.queuedBytes += count
            return offset
        }
        queue.async { [self] in
            let failure = state.withLock { $0.error } == nil ? write(chunk, at: offset) : nil
            let wake = state.withLock { s -> Bool in
                s.queuedBytes -= count
                if let failure, s.error == nil { s.error = failure }
                guard let limit = s.waitingFor, s.queuedBytes <= limit || s.error != nil else { return false }
                s.waitingFor = nil
                return true
            }
            if wake { drained.signal() }
        }
    }

    /// The next chunk goes to `offset` (a window asked for again after a retry, or a file fetched
    /// again from its start). Chunks queued before are still written first, so the later ones win.
    func rewind(to offset: UInt64) {
        state.withLock { $0.nextOffset = offset }
    }

    /// Where the next chunk goes: the bytes received so far, from the start of the file.
    var receivedUpTo: UInt64 { state.withLock { $0.nextOffset } }

    /// Blocks the calling thread (a fetch's, never an event loop) until at most `limit` bytes
    /// wait for the disk, or a write failed.
    func waitUntilQueued(atMost limit: Int) {
        while state.withLock({ s -> Bool in
            guard s.queuedBytes > limit, s.error == nil else { return false }
            s.waitingFor = limit
            return true
        }) {
            drained.wait()
        }
    }

    private func write(_ chunk: ByteBuffer, at offset: UInt64) -> FileSystemError? {
        WholeWrite.write(chunk, to: fd, at: offset).map { FileSystemError($0, "writing the cache") }
    }

    /// Waits until every accepted chunk is written (call it before closing `fd`, whatever the
    /// fetch's outcome); throws the first write failure.
    func finish() throws {
        queue.sync {}
        if let error = state.withLock({ $0.error }) { throw error }
    }
}
