import Glibc
import NIOCore

/// write(2) of a whole buffer, through partial writes and EINTR.
public enum WholeWrite {
    /// Writes every readable byte of `buffer` to `fd` at its current offset. Returns nil, or the
    /// errno of the failure (EIO for a write that wrote nothing: a full disk).
    public static func write(_ buffer: ByteBuffer, to fd: Int32) -> Int32? {
        buffer.withUnsafeReadableBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return n < 0 ? errno : EIO }
                offset += n
            }
            return nil
        }
    }
}
