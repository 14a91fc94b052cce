import Glibc
import NIOCore

/// write(2) or pwrite(2) of a whole buffer, through partial writes and EINTR.
public enum WholeWrite {
    /// Writes every byte of `bytes` to `fd`: at its current offset, or at `offset`. Returns nil,
    /// or the errno of the failure (EIO for a write that wrote nothing: a full disk).
    public static func write(_ bytes: UnsafeRawBufferPointer, to fd: Int32, at offset: UInt64? = nil) -> Int32? {
        var done = 0
        while done < bytes.count {
            let n = offset.map { pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t($0) + off_t(done)) }
                ?? Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return n < 0 ? errno : EIO }
            done += n
        }
        return nil
    }

    /// Writes every readable byte of `buffer` to `fd`, as `write(_:to:at:)`.
    public static func write(_ buffer: ByteBuffer, to fd: Int32, at offset: UInt64? = nil) -> Int32? {
        buffer.withUnsafeReadableBytes { write($0, to: fd, at: offset) }
    }
}
