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
        /// Chunks accepted and not yet written, in order, each with its offset in the file.
        var unwritten: [(chunk: ByteBuffer, offset: UInt64)] = []
        /// The queue is writing: chunks accepted meanwhile join its next batch.
        var draining = false
    }

    private let fd: Int32
    private let queue = DispatchQueue(label: "peach.fetch-writer")
    private let state = Mutex(State())
    private let drained = DispatchSemaphore(value: 0)

    init(fd: Int32) {
        self.fd = fd
    }

    /// Called on the event loop with each data frame's body (or a piece of one), in order. The
    /// queue writes what has arrived in batches: one wake-up and one pwritev for many pieces.
    func accept(_ chunk: ByteBuffer) {
        let count = chunk.readableBytes
        let startDraining = state.withLock { s -> Bool in
            s.unwritten.append((chunk, s.nextOffset))
            s.nextOffset += UInt64(count)
            s.queuedBytes += count
            defer { s.draining = true }
            return !s.draining
        }
        if startDraining { queue.async { [self] in drain() } }
    }

    /// Writes the accepted chunks, batch after batch, until none is left.
    private func drain() {
        while true {
            let batch = state.withLock { s -> [(chunk: ByteBuffer, offset: UInt64)]? in
                guard !s.unwritten.isEmpty else {
                    s.draining = false
                    return nil
                }
                defer { s.unwritten = [] }
                return s.unwritten
            }
            guard let batch else { return }
            let failure = state.withLock { $0.error } == nil ? write(batch) : nil
            let bytes = batch.reduce(0) { $0 + $1.chunk.readableBytes }
            let wake = state.withLock { s -> Bool in
                s.queuedBytes -= bytes
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

    /// Most chunks one pwritev takes (far under IOV_MAX, and each nests a closure).
    static let chunksPerWrite = 64

    /// Writes a batch: each run of chunks that follow each other in the file with pwritev.
    private func write(_ batch: [(chunk: ByteBuffer, offset: UInt64)]) -> FileSystemError? {
        var start = 0
        while start < batch.count {
            var end = start + 1
            var next = batch[start].offset + UInt64(batch[start].chunk.readableBytes)
            while end < batch.count, end - start < Self.chunksPerWrite, batch[end].offset == next {
                next += UInt64(batch[end].chunk.readableBytes)
                end += 1
            }
            if let failure = write(run: batch[start..<end]) { return failure }
            start = end
        }
        return nil
    }

    /// One pwritev of chunks that follow each other from the first one's offset; what a short
    /// write leaves is written chunk by chunk.
    private func write(run: ArraySlice<(chunk: ByteBuffer, offset: UInt64)>) -> FileSystemError? {
        let total = run.reduce(0) { $0 + $1.chunk.readableBytes }
        var vectors: [iovec] = []
        vectors.reserveCapacity(run.count)
        var failure: Int32 = 0
        let written = Self.withVectors(run, &vectors) { vectors, count in
            let n = pwritev(fd, vectors, Int32(count), off_t(run.first!.offset))
            failure = errno
            return n
        }
        if written == total { return nil }
        if written < 0 && failure != EINTR { return FileSystemError(failure, "writing the cache") }
        var skip = max(written, 0)
        for (chunk, offset) in run {
            let count = chunk.readableBytes
            if skip >= count {
                skip -= count
                continue
            }
            var rest = chunk
            rest.moveReaderIndex(forwardBy: skip)
            if let failure = WholeWrite.write(rest, to: fd, at: offset + UInt64(skip)) { return FileSystemError(failure, "writing the cache") }
            skip = 0
        }
        return nil
    }

    /// Calls `body` with an iovec for each chunk's readable bytes, valid during the call.
    private static func withVectors(_ run: ArraySlice<(chunk: ByteBuffer, offset: UInt64)>, _ vectors: inout [iovec],
                                    _ body: (UnsafePointer<iovec>, Int) -> Int) -> Int {
        guard let first = run.first else { return vectors.withUnsafeBufferPointer { body($0.baseAddress!, $0.count) } }
        return first.chunk.withUnsafeReadableBytes { bytes in
            vectors.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: bytes.baseAddress), iov_len: bytes.count))
            return withVectors(run.dropFirst(), &vectors, body)
        }
    }

    /// Waits until every accepted chunk is written (call it before closing `fd`, whatever the
    /// fetch's outcome); throws the first write failure.
    func finish() throws {
        queue.sync {}
        if let error = state.withLock({ $0.error }) { throw error }
    }
}
