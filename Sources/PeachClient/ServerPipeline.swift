import Glibc
import NIOConcurrencyHelpers
import NIOCore
import PeachProtocol

/// The one way a design reaches the server, in the style of kAFS's `afs_operation`:
///
/// 1. the design's table takes its stamp before the request leaves (`stampBeforeSending`: in AFS
///    mode, the breaks seen so far, which covers every FID the reply may carry, named in the
///    request or not);
/// 2. the request goes through the connection (numbered, retried, leased: `ServerConnection`);
/// 3. the transfer's statistics are counted here;
/// 4. `apply` installs every status the reply carries, under that stamp.
///
/// The designs keep their policies (what keeps a status valid, where data lives) in `apply`;
/// none of them calls the connection itself.
extension CacheDesign {
    /// A request without file data (status, namespace, NFS procedures).
    func perform<T>(_ request: Request, apply: (Reply, Stamp) throws -> T) throws -> T {
        let stamp = stampBeforeSending()
        let reply = try core.connection.call(request)
        countTransfer(request, reply)
        return try apply(reply, stamp)
    }

    /// FetchData of a whole file into `fd`, checked to be as long as its status says.
    func fetchData<T>(_ fid: FID, into fd: Int32, apply: (FileStatus, UInt64, Stamp) throws -> T) throws -> T {
        let stamp = stampBeforeSending()
        let (status, expiry, received) = try core.connection.fetchData(fid, into: fd)
        guard received == status.size else { throw FileSystemError(EIO, "fetched \(received) bytes of \(status.size)") }
        statistics.update {
            $0.fetches += 1
            $0.fetchedBytes += received
        }
        return try apply(status, expiry, stamp)
    }

    /// FetchData of a whole directory listing or symlink target into memory.
    func fetchData<T>(inMemory fid: FID, apply: (FileStatus, UInt64, ByteBuffer, Stamp) throws -> T) throws -> T {
        let stamp = stampBeforeSending()
        let bytes = NIOLockedValueBox(ByteBuffer())
        let (status, expiry) = try core.connection.fetchData(fid, sink: { chunk in
            var chunk = chunk
            bytes.withLockedValue { _ = $0.writeBuffer(&chunk) }
        }, reset: { bytes.withLockedValue { $0.clear() } })
        let content = bytes.withLockedValue { $0 }
        statistics.update {
            $0.fetches += 1
            $0.fetchedBytes += UInt64(content.readableBytes)
        }
        return try apply(status, expiry, content, stamp)
    }

    /// FetchData of one range (a file read through, larger than the cache).
    func fetchRange<T>(_ fid: FID, offset: UInt64, length: UInt64, apply: (FileStatus, UInt64, [UInt8], Stamp) throws -> T) throws -> T {
        let stamp = stampBeforeSending()
        let (status, expiry, bytes) = try core.connection.fetchRange(fid, offset: offset, length: length)
        statistics.update { $0.fetchedBytes += UInt64(bytes.count) }
        return try apply(status, expiry, bytes, stamp)
    }

    /// StoreData of `size` bytes of `fd`.
    func storeData<T>(_ fid: FID, fd: Int32, size: UInt64, mtime: Timespec, status change: StoreStatusChange, baseVersion: UInt64?,
                      apply: (FileStatus, UInt64, Stamp) throws -> T) throws -> T {
        let stamp = stampBeforeSending()
        let (status, expiry) = try core.connection.storeData(fid, fd: fd, size: size, mtime: mtime, status: change, baseVersion: baseVersion)
        statistics.update {
            $0.stores += 1
            $0.storedBytes += size
        }
        return try apply(status, expiry, stamp)
    }

    /// Fetches and stores made with plain requests: NFS READ, WRITE and a whole READDIR listing.
    private func countTransfer(_ request: Request, _ reply: Reply) {
        switch (request, reply) {
        case (.read, .read(_, let data)):
            statistics.update {
                $0.fetches += 1
                $0.fetchedBytes += UInt64(data.count)
            }
        case (.write(_, _, let data), .write):
            statistics.update {
                $0.stores += 1
                $0.storedBytes += UInt64(data.count)
            }
        case (.readDir, .readDir(_, let page, let end)) where end || page.isEmpty:
            statistics.update { $0.fetches += 1 }
        default:
            break
        }
    }
}
