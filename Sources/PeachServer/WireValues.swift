import Glibc
import PeachProtocol

/// The one place where integers a client sent become the types the server works with.
///
/// Every conversion that could trap (`off_t(x)`, `Int64(x)`) or overflow (`offset + count`)
/// goes through here and throws a status code instead: a Swift trap in the server is a remote
/// crash of every client's file service.
enum WireValues {
    /// The byte range `offset ..< offset + count` of a file whose size may not pass `maximumFileSize`.
    /// Returns the offset as `off_t` and the end of the range.
    static func range(offset: UInt64, count: Int, maximumFileSize: UInt64) throws -> (offset: off_t, end: UInt64) {
        let (end, overflow) = offset.addingReportingOverflow(UInt64(count))
        guard !overflow, end <= maximumFileSize, end <= UInt64(Int64.max) else { throw StatusCode.fileTooLarge }
        return (off_t(offset), end)
    }

    /// A file size: at most `maximumFileSize`.
    static func fileSize(_ size: UInt64, maximumFileSize: UInt64) throws -> Int64 {
        guard size <= maximumFileSize, size <= UInt64(Int64.max) else { throw StatusCode.fileTooLarge }
        return Int64(size)
    }

    /// A device number for mknod. Linux's kernel encodes dev_t in 32 bits (12-bit major, 20-bit
    /// minor), so anything wider is not a device number any client can have meant.
    static func deviceNumber(_ rdev: UInt64) throws -> Int64 {
        guard rdev <= UInt64(UInt32.max) else { throw StatusCode.invalidArgument }
        return Int64(rdev)
    }

    /// Permission and type bits a client may set: the rest are dropped.
    static func mode(_ mode: UInt32) -> UInt32 { mode & 0o7777 }

    /// A count of entries or bytes that must fit in memory the server allocates for it.
    static func count(_ count: UInt32, atMost limit: Int) throws -> Int {
        guard Int(count) <= limit else { throw StatusCode.invalidArgument }
        return Int(count)
    }
}

/// The limits a volume enforces on every change.
public struct VolumeLimits: Sendable, Equatable {
    /// The largest file (`--max-file-size`, default 1 TiB): a larger size or offset gets EFBIG.
    public var maximumFileSize: UInt64
    /// The most bytes of regular-file content the volume holds (`--quota`), nil for none.
    /// Counted as file sizes, as `ls -l` shows them, so a sparse file counts whole.
    public var quota: UInt64?

    public static let defaultMaximumFileSize: UInt64 = 1 << 40

    public init(maximumFileSize: UInt64 = VolumeLimits.defaultMaximumFileSize, quota: UInt64? = nil) {
        self.maximumFileSize = maximumFileSize
        self.quota = quota
    }
}
