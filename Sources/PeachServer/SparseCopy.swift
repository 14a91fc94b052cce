import CPeachSystem
import Glibc
import PeachProtocol

/// Copies the first `size` bytes of a version file into a new one, data ranges only.
///
/// A truncate or an extend makes a new immutable version. Copying it byte for byte would turn
/// every hole into allocated zeros: two requests (a 1-byte WRITE at 2^40, a SETATTR of the size)
/// could then fill the server's disk. Here only the ranges SEEK_DATA finds are copied, so the
/// copy allocates what the source allocates (up to `size`), and a copy that fails is removed at
/// once rather than left for the next start-up.
enum SparseCopy {
    /// The source version was replaced before it could be opened.
    struct SourceGone: Error, Equatable {}

    /// - Parameter source: nil when the old version has no file (an empty file).
    static func copy(from source: String?, to destination: String, size: Int64) throws {
        try makeVersionFile(destination, size: size) { output in
            guard let source else { return }
            let input = open(source, O_RDONLY | O_CLOEXEC)
            guard input >= 0 else { throw errno == ENOENT ? SourceGone() : statusCode(errno) }
            defer { close(input) }
            try copyDataRanges(from: input, to: output, limit: size)
        }
    }

    /// A new version file of `size` bytes starting with `bytes` (a small file's inline content),
    /// the rest a hole.
    static func write(_ bytes: [UInt8], to destination: String, size: Int64) throws {
        try makeVersionFile(destination, size: size) { output in
            let data = Array(bytes.prefix(Int(clamping: size)))
            var written = 0
            while written < data.count {
                let n = data.withUnsafeBytes { pwrite(output, $0.baseAddress! + written, data.count - written, off_t(written)) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw n < 0 ? statusCode(errno) : .noSpace }
                written += n
            }
        }
    }

    /// Creates `destination`, lets `fill` write its data, and sets its size; a file that fails
    /// anywhere is removed at once.
    private static func makeVersionFile(_ destination: String, size: Int64, fill: (Int32) throws -> Void) throws {
        let output = open(destination, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard output >= 0 else { throw statusCode(errno) }
        var done = false
        defer {
            close(output)
            if !done { unlink(destination) }
        }
        try fill(output)
        guard ftruncate(output, off_t(size)) == 0 else { throw statusCode(errno) }
        done = true
    }

    private static func copyDataRanges(from input: Int32, to output: Int32, limit: Int64) throws {
        var position: off_t = 0
        while position < limit {
            let dataStart = lseek(input, position, PEACH_SEEK_DATA)
            if dataStart < 0 {
                if errno == ENXIO { return }  // nothing but a hole from here to the end
                throw statusCode(errno)
            }
            guard dataStart < limit else { return }
            var dataEnd = lseek(input, dataStart, PEACH_SEEK_HOLE)
            guard dataEnd >= 0 else { throw statusCode(errno) }
            dataEnd = min(dataEnd, off_t(limit))
            try copyRange(from: input, to: output, start: dataStart, end: dataEnd)
            position = dataEnd
        }
    }

    private static func copyRange(from input: Int32, to output: Int32, start: off_t, end: off_t) throws {
        var inOffset = start
        var outOffset = start
        while inOffset < end {
            let n = copy_file_range(input, &inOffset, output, &outOffset, Int(end - inOffset), 0)
            if n < 0 {
                if errno == EINTR { continue }
                throw statusCode(errno)
            }
            if n == 0 { return }  // the source is shorter than it said: the rest stays a hole
        }
    }

    static func statusCode(_ error: Int32) -> StatusCode {
        error == ENOSPC || error == EDQUOT ? .noSpace : error == EFBIG ? .fileTooLarge : .ioError
    }
}
