import Glibc
import NIOCore
import PeachProtocol
import PeachSupport

/// The file syscalls of an incoming StoreData, run on the file I/O pool (never an event loop).
enum UploadFile {
    static func create(_ path: String) -> Int32 {
        open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
    }

    /// Writes all of `body`; false on any failure (disk full, quota).
    static func append(_ body: ByteBuffer, to fd: Int32) -> Bool {
        WholeWrite.write(body, to: fd) == nil
    }

    /// Makes the upload durable (unless `sync` is false: `--sync delayed`) and closes it; on
    /// failure it is deleted.
    static func finish(_ fd: Int32, path: String, sync: Bool) -> Bool {
        let synced = !sync || fsync(fd) == 0
        close(fd)
        if !synced { unlink(path) }
        return synced
    }

    static func discard(_ fd: Int32, path: String) {
        if fd >= 0 { close(fd) }
        unlink(path)
    }

    /// What one data frame's step left: the descriptor (-1 once closed), whether it worked, and
    /// whether the upload is complete, durable (per `--sync`) and closed.
    struct Step: Sendable {
        var fd: Int32
        var succeeded: Bool
        var finished: Bool
    }

    /// One data frame of an upload: creates the file on the first, writes the bytes, and on the
    /// last makes it durable and closes it.
    static func step(fd: Int32, path: String, body: ByteBuffer, last: Bool, sync: Bool) -> Step {
        var fd = fd
        if fd < 0 {
            fd = create(path)
            guard fd >= 0 else { return Step(fd: -1, succeeded: false, finished: false) }
        }
        guard body.readableBytes == 0 || append(body, to: fd) else { return Step(fd: fd, succeeded: false, finished: false) }
        guard last else { return Step(fd: fd, succeeded: true, finished: false) }
        let synced = finish(fd, path: path, sync: sync)
        return Step(fd: -1, succeeded: synced, finished: synced)
    }
}
