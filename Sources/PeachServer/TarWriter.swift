import Foundation
import NIOCore
import PeachProtocol
import PeachSupport

/// Writes a POSIX ustar archive (what `tar -tf` lists and any tar unpacks) of a backup's staging
/// directory. The server writes it itself rather than run tar: tar fails a member whose ctime
/// moved while it read it, and a version file's ctime moves whenever a store removes its other
/// name from the data directory, although its content never changes.
struct TarWriter {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static let blockSize = 512
    private let fd: Int32

    /// Creates `path`, which must not exist.
    init(path: String) throws {
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Failure(description: "cannot create \(path): \(String(cString: strerror(errno)))") }
    }

    /// A directory member (`name` ends with "/").
    func addDirectory(_ name: String) throws {
        try write(Self.header(name: name, size: 0, mode: 0o755, typeflag: UInt8(ascii: "5")))
    }

    /// A regular member: the content of the file at `path`, as it is when opened.
    func addFile(_ name: String, from path: String) throws {
        let source = open(path, O_RDONLY | O_CLOEXEC)
        guard source >= 0 else { throw Failure(description: "cannot read \(path): \(String(cString: strerror(errno)))") }
        defer { close(source) }
        var st = stat()
        guard fstat(source, &st) == 0 else { throw Failure(description: "cannot stat \(path)") }
        let size = UInt64(st.st_size)
        try write(Self.header(name: name, size: size, mode: 0o644, typeflag: UInt8(ascii: "0")))
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var copied: UInt64 = 0
        while copied < size {
            let wanted = Int(min(UInt64(chunk.count), size - copied))
            let n = chunk.withUnsafeMutableBytes { pread(source, $0.baseAddress, wanted, off_t(copied)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw Failure(description: "\(path) became shorter while it was archived") }
            try write(chunk[0..<n])
            copied += UInt64(n)
        }
        let padding = (Self.blockSize - Int(size % UInt64(Self.blockSize))) % Self.blockSize
        try write([UInt8](repeating: 0, count: padding))
    }

    /// Two zero blocks end the archive; then it is made durable and closed.
    func finish() throws {
        try write([UInt8](repeating: 0, count: 2 * Self.blockSize))
        guard fsync(fd) == 0 else { throw Failure(description: "cannot write the archive: \(String(cString: strerror(errno)))") }
        close(fd)
    }

    /// Closes without finishing (the caller removes the file).
    func abandon() { close(fd) }

    private func write<Bytes: Sequence>(_ bytes: Bytes) throws where Bytes.Element == UInt8 {
        if let failure = WholeWrite.write(ByteBuffer(bytes: bytes), to: fd) {
            throw Failure(description: "cannot write the archive: \(String(cString: strerror(failure)))")
        }
    }

    /// A ustar header. Sizes of 8 GiB and more use GNU tar's base-256 form, which every GNU and
    /// BSD tar reads.
    static func header(name: String, size: UInt64, mode: UInt32, typeflag: UInt8) throws -> [UInt8] {
        guard name.utf8.count < 100 else { throw Failure(description: "member name too long: \(name)") }
        var header = [UInt8](repeating: 0, count: blockSize)
        func put(_ text: String, at offset: Int) {
            for (i, byte) in text.utf8.enumerated() { header[offset + i] = byte }
        }
        func octal(_ value: UInt64, at offset: Int, width: Int) {
            put(String(repeating: "0", count: max(0, width - 1 - String(value, radix: 8).count)) + String(value, radix: 8), at: offset)
        }
        put(name, at: 0)
        octal(UInt64(mode), at: 100, width: 8)
        octal(0, at: 108, width: 8)  // uid
        octal(0, at: 116, width: 8)  // gid
        if size < 1 << 33 {
            octal(size, at: 124, width: 12)
        } else {
            header[124] = 0x80
            for i in 0..<8 { header[135 - i] = UInt8(truncatingIfNeeded: size >> (8 * UInt64(i))) }
        }
        octal(UInt64(Date().timeIntervalSince1970), at: 136, width: 12)
        header[156] = typeflag
        put("ustar", at: 257)  // followed by NUL
        put("00", at: 263)
        put("root", at: 265)
        put("root", at: 297)
        // The checksum: the sum of every byte, with its own field counted as spaces.
        for i in 148..<156 { header[i] = UInt8(ascii: " ") }
        let sum = header.reduce(0) { $0 + UInt64($1) }
        octal(sum, at: 148, width: 7)
        header[155] = UInt8(ascii: " ")
        return header
    }
}
