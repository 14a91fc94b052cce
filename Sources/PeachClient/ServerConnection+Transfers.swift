import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import PeachProtocol
import PeachSecurity
import PeachSupport

/// Requests that carry file data: FetchData (whole, in windows, or one range), StoreData, a backup.
extension ServerConnection {
    /// FetchData: the reply's status, then the content, each chunk handed to `sink` in order
    /// (on the connection's event loop).
    public func fetchData(_ fid: FID, sink: @escaping @Sendable (ByteBuffer) throws -> Void, reset: @Sendable () -> Void = {}) throws -> (FileStatus, UInt64) {
        let reply = try withRetries(.fetchData(fid)) { channel, handler, deadline, _ in
            reset()
            return try send(.fetchData(fid), on: channel, handler: handler, until: deadline, sink: sink)
        }
        guard case .fetchData(let status, let expiry) = reply else { throw FileSystemError(EIO, "unexpected reply") }
        return (status, expiry)
    }

    /// An admin question's report (JSON, `AdminReports`).
    public func admin(_ query: AdminQuery) throws -> [UInt8] {
        guard case .adminReport(let json) = try call(.admin(query)) else { throw FileSystemError.unexpectedReply }
        return json
    }

    /// An admin backup: the archive's bytes, handed to `sink` in order (on the event loop).
    /// Returns the size the server announced. Waits up to `limit` for the server to pack and send it.
    public func backup(limit: TimeAmount, sink: @escaping @Sendable (ByteBuffer) throws -> Void) throws -> UInt64 {
        let reply = try withRetries(.admin(.backup)) { channel, handler, _, _ in
            try send(.admin(.backup), on: channel, handler: handler, until: .now() + limit, sink: sink)
        }
        guard case .backup(let size) = reply else { throw FileSystemError.unexpectedReply }
        return size
    }

    /// FetchData of one range into memory (a file read through, larger than the cache): the
    /// status, the promise's expiry and the bytes.
    public func fetchRange(_ fid: FID, offset: UInt64, length: UInt64) throws -> (FileStatus, UInt64, [UInt8]) {
        let request = Request.fetchData(fid, range: ByteRange(offset: offset, length: length))
        let collected = NIOLockedValueBox<[UInt8]>([])
        let reply = try withRetries(request) { channel, handler, deadline, _ -> Reply in
            collected.withLockedValue { $0.removeAll(keepingCapacity: true) }
            let budget = DataBudget(Int(clamping: length))
            return try send(request, on: channel, handler: handler, until: deadline, sink: { chunk in
                try budget.take(chunk.readableBytes)
                collected.withLockedValue { $0 += chunk.readableBytesView }
            })
        }
        guard case .fetchData(let status, let expiry) = reply else { throw FileSystemError(EIO, "unexpected reply") }
        return (status, expiry, collected.withLockedValue { $0 })
    }

    /// How much of a file one FetchData asks for, and how much may wait for the disk.
    static let fetchWindow = 16 << 20
    static let maximumQueuedFetchBytes = 32 << 20

    /// FetchData of a file's whole content into `fd` (from offset 0), written off the event loop
    /// (`FetchWriter`). Returns the status, the promise's expiry and the bytes written.
    ///
    /// The file comes in windows of `fetchWindow` bytes, each asked for once no more than
    /// `maximumQueuedFetchBytes` minus a window wait for the disk: a slow disk then slows the
    /// fetch, but the connection is always read, so callback breaks behind the data are
    /// acknowledged at once. A file whose data version moves between windows is fetched again
    /// from its start.
    public func fetchData(_ fid: FID, into fd: Int32) throws -> (FileStatus, UInt64, UInt64) {
        let writer = FetchWriter(fd: fd)
        var offset: UInt64 = 0
        var version: UInt64?
        var restarts = 0
        var last: (status: FileStatus, expiry: UInt64)?
        do {
            while true {
                writer.waitUntilQueued(atMost: Self.maximumQueuedFetchBytes - Self.fetchWindow)
                let request = Request.fetchData(fid, range: ByteRange(offset: offset, length: UInt64(Self.fetchWindow)))
                let reply = try withRetries(request) { channel, handler, deadline, _ -> Reply in
                    // Each attempt writes the window from its start, and takes no more than it
                    // asked for: a server that sends more fails the call, its excess dropped.
                    writer.rewind(to: offset)
                    let budget = DataBudget(Self.fetchWindow)
                    return try send(request, on: channel, handler: handler, until: deadline, sink: { chunk in
                        try budget.take(chunk.readableBytes)
                        writer.accept(chunk)
                    })
                }
                guard case .fetchData(let status, let expiry) = reply else { throw FileSystemError(EIO, "unexpected reply") }
                if let version, version != status.dataVersion {
                    // Stored anew between two windows: the parts would not match.
                    restarts += 1
                    guard restarts < 8 else { throw FileSystemError(EAGAIN, "the file kept changing during its fetch") }
                    offset = 0
                    writer.rewind(to: 0)
                    continue
                }
                version = status.dataVersion
                last = (status, expiry)
                let received = writer.receivedUpTo - offset
                offset += received
                if received < UInt64(Self.fetchWindow) || offset >= status.size { break }
            }
            try writer.finish()
        } catch {
            _ = try? writer.finish()
            throw error
        }
        // An earlier attempt may have written past the end of the file.
        guard ftruncate(fd, off_t(offset)) == 0 else { throw FileSystemError(errno, "trimming the fetched copy") }
        guard let last else { throw FileSystemError.unexpectedReply }
        return (last.status, last.expiry, offset)
    }

    /// StoreData: streams `size` bytes from `fd` (from offset 0) and returns the new status.
    /// With `baseVersion`, only if the file is still at that data version (else versionConflict).
    public func storeData(_ fid: FID, fd: Int32, size: UInt64, mtime: Timespec,
                          status: StoreStatusChange = StoreStatusChange(), baseVersion: UInt64? = nil) throws -> (FileStatus, UInt64) {
        let request = Request.storeData(fid, size: size, mtime: mtime, status: status, baseVersion: baseVersion)
        if size <= UInt64(Self.smallStoreSize) {
            // One frame of data: read now, sent with the request in one trip to the event loop.
            let reply = try withRetries(request) { channel, handler, deadline, number in
                try send(request, on: channel, handler: handler, until: deadline, number: number,
                         data: try Self.readWhole(fd: fd, size: Int(size), allocator: channel.allocator))
            }
            guard case .status(let status, let expiry) = reply else { throw FileSystemError(EIO, "unexpected reply") }
            return (status, expiry)
        }
        let reply = try withRetries(request) { channel, handler, deadline, number in
            try send(request, on: channel, handler: handler, until: deadline, number: number, upload: { channel, id in
                do {
                    try Self.upload(fd: fd, size: size, channel: channel, id: id)
                } catch {
                    // The server cannot tell a half-sent file from a slow one: drop the connection,
                    // which discards the upload there and fails this call here. A write that
                    // failed because the connection went is a lost server, retried as any
                    // request is (a hard mount waits, a soft one until --timeout); a local
                    // failure (reading the cached copy) is not.
                    channel.close(promise: nil)
                    throw FileSystemError.transport(error)
                }
            })
        }
        guard case .status(let status, let expiry) = reply else { throw FileSystemError(EIO, "unexpected reply") }
        return (status, expiry)
    }

    /// Stores up to this size send their data with the request (the server keeps stores up to
    /// its `--inline-max`, 64 KiB by default, in memory as well).
    static let smallStoreSize = 64 << 10

    /// The first `size` bytes of the cached copy open as `fd`.
    static func readWhole(fd: Int32, size: Int, allocator: ByteBufferAllocator) throws -> ByteBuffer {
        var buffer = allocator.buffer(capacity: size)
        let got = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { raw in
            var done = 0
            while done < size {
                let n = pread(fd, raw.baseAddress! + done, size - done, off_t(done))
                if n < 0 && errno == EINTR { continue }
                guard n >= 0 else { throw FileSystemError(errno, "reading the cached copy") }
                if n == 0 { break }
                done += n
            }
            return done
        }
        guard got == size else { throw FileSystemError(EIO, "the cached copy is shorter than its size") }
        return buffer
    }

    static func upload(fd: Int32, size: UInt64, channel: Channel, id: UInt32) throws {
        var offset: UInt64 = 0
        var inFlight: [EventLoopFuture<Void>] = []
        repeat {
            let want = Int(min(UInt64(Frame.dataChunkSize), size - offset))
            var buffer = channel.allocator.buffer(capacity: want)
            let got = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: want) { raw in
                let n = pread(fd, raw.baseAddress, want, off_t(offset))
                guard n >= 0 else { throw FileSystemError(errno, "reading the cached copy") }
                return n
            }
            guard got == want else { throw FileSystemError(EIO, "the cached copy is shorter than its size") }
            offset += UInt64(got)
            let last = offset == size
            inFlight.append(channel.writeAndFlush(Frame(kind: .data, flags: last ? Frame.flagLastChunk : 0, id: id,
                                                        opcode: Opcode.storeData.rawValue, body: buffer)))
            if inFlight.count >= 4 { try inFlight.removeFirst().wait() }
        } while offset < size
        for future in inFlight { try future.wait() }
    }
}

/// The bytes a FetchData asked for: the data frames of its reply may bring no more. Past it the
/// sink throws, so the call fails once its last frame is in and nothing more of it is kept (a
/// faulty server cannot fill the client's memory or cache).
final class DataBudget: Sendable {
    private let left: NIOLockedValueBox<Int>

    init(_ bytes: Int) { left = NIOLockedValueBox(bytes) }

    func take(_ bytes: Int) throws {
        try left.withLockedValue { left in
            guard bytes <= left else { throw FileSystemError(EIO, "the file server sent more data than was asked for") }
            left -= bytes
        }
    }
}
