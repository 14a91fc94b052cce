import Foundation
import NIOCore
import PeachProtocol
import PeachSupport

/// Reads a tar archive member by member (the ustar and GNU header forms GNU tar writes), so that
/// `peach server --restore` creates every file itself and follows no link: it is told each
/// member's type before a byte of it lands on disk.
struct TarReader {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    struct Member {
        enum Kind: Equatable {
            case regular
            case directory
            /// Anything else: a link, a device, a FIFO, a GNU or pax extension header.
            case other(typeflag: UInt8)
        }

        var name: String
        var kind: Kind
        var size: UInt64
        /// Where its content starts in the archive.
        var contentOffset: UInt64
    }

    static let blockSize = 512
    /// The largest member size taken (1 PiB): sizes near 2^64 would overflow the offsets.
    static let maximumSize: UInt64 = 1 << 50
    private let fd: Int32
    private let archiveSize: UInt64
    private var offset: UInt64 = 0

    /// Opens `path` (not following a link at its last component) for reading.
    init(path: String) throws {
        fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure(description: "cannot read \(path): \(String(cString: strerror(errno)))") }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            Glibc.close(fd)
            throw Failure(description: "\(path) is not a regular file")
        }
        archiveSize = UInt64(st.st_size)
    }

    func close() { _ = Glibc.close(fd) }

    /// The next member, or nil at the end of the archive (a zero block, or the end of the file).
    mutating func next() throws -> Member? {
        guard offset + UInt64(Self.blockSize) <= archiveSize else { return nil }
        var header = [UInt8](repeating: 0, count: Self.blockSize)
        try read(into: &header, at: offset)
        if header.allSatisfy({ $0 == 0 }) { return nil }
        guard Self.checksumMatches(header) else { throw Failure(description: "not a tar archive (bad header at byte \(offset))") }
        let size = try Self.size(header)
        let member = Member(name: Self.name(header), kind: Self.kind(header[156]), size: size,
                            contentOffset: offset + UInt64(Self.blockSize))
        let padded = (size + UInt64(Self.blockSize) - 1) / UInt64(Self.blockSize) * UInt64(Self.blockSize)
        guard member.contentOffset + padded <= archiveSize || member.contentOffset + size <= archiveSize else {
            throw Failure(description: "the archive ends inside '\(member.name)'")
        }
        offset = member.contentOffset + padded
        return member
    }

    /// Copies a regular member's content to `target`, an open descriptor of an empty file.
    /// Runs of zeros become holes, as the version files they came from may have had.
    func copyContent(of member: Member, to target: Int32) throws {
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var done: UInt64 = 0
        while done < member.size {
            let count = Int(min(UInt64(chunk.count), member.size - done))
            try read(into: &chunk, count: count, at: member.contentOffset + done)
            if !chunk[0..<count].allSatisfy({ $0 == 0 }) {
                guard lseek(target, off_t(done), SEEK_SET) >= 0,
                      WholeWrite.write(ByteBuffer(bytes: chunk[0..<count]), to: target) == nil else {
                    throw Failure(description: "cannot write '\(member.name)': \(String(cString: strerror(errno)))")
                }
            }
            done += UInt64(count)
        }
        guard ftruncate(target, off_t(member.size)) == 0 else {
            throw Failure(description: "cannot size '\(member.name)': \(String(cString: strerror(errno)))")
        }
    }

    private func read(into buffer: inout [UInt8], count: Int? = nil, at position: UInt64) throws {
        let wanted = count ?? buffer.count
        var got = 0
        while got < wanted {
            let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + got, wanted - got, off_t(position) + off_t(got)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw Failure(description: "the archive ends early (at byte \(position + UInt64(got)))") }
            got += n
        }
    }

    // MARK: Header fields (POSIX.1-1988 ustar, with GNU tar's extensions)

    private static func kind(_ typeflag: UInt8) -> Member.Kind {
        switch typeflag {
        case UInt8(ascii: "0"), 0: .regular
        case UInt8(ascii: "5"): .directory
        default: .other(typeflag: typeflag)
        }
    }

    /// The name field, with the ustar prefix when the header is POSIX ustar (GNU's own form
    /// keeps other fields where the prefix would be).
    private static func name(_ header: [UInt8]) -> String {
        let name = string(header[0..<100])
        let isPOSIX = header[257..<263].elementsEqual(Array("ustar\0".utf8))
        let prefix = isPOSIX ? string(header[345..<500]) : ""
        return prefix.isEmpty ? name : prefix + "/" + name
    }

    private static func string(_ field: ArraySlice<UInt8>) -> String {
        String(decoding: field.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// Octal digits, or GNU's base-256 form (high bit of the first byte set) for large sizes.
    private static func size(_ header: [UInt8]) throws -> UInt64 {
        let field = header[124..<136]
        if field.first! & 0x80 != 0 {
            var value: UInt64 = 0
            for byte in field.dropFirst() {
                guard value >> 56 == 0 else { throw Failure(description: "a member size is out of range") }
                value = value << 8 | UInt64(byte)
            }
            // Past what any file here can be: refused before `next` does arithmetic with it.
            guard value <= maximumSize else { throw Failure(description: "a member size is out of range") }
            return value
        }
        return try octal(field)
    }

    private static func octal(_ field: ArraySlice<UInt8>) throws -> UInt64 {
        var value: UInt64 = 0
        for byte in field {
            if byte == 0 || byte == UInt8(ascii: " ") {
                if value > 0 { break } else { continue }
            }
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "7"), value >> 60 == 0 else {
                throw Failure(description: "not a tar archive (a number field is not octal)")
            }
            value = value << 3 | UInt64(byte - UInt8(ascii: "0"))
        }
        return value
    }

    /// The header's checksum: the sum of its bytes with the checksum field read as spaces.
    private static func checksumMatches(_ header: [UInt8]) -> Bool {
        guard let stored = try? octal(header[148..<156]) else { return false }
        var sum: UInt64 = 0
        for (index, byte) in header.enumerated() {
            sum += (148..<156).contains(index) ? UInt64(UInt8(ascii: " ")) : UInt64(byte)
        }
        return sum == stored
    }
}
