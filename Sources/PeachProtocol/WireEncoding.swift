import NIOCore

/// Field encodings shared by every message: big-endian integers, u16-length UTF-8 strings,
/// optionals as a presence byte. Readers throw `ProtocolError` instead of trapping.
extension ByteBuffer {
    @inlinable
    mutating func readOrThrow<T: FixedWidthInteger>(_: T.Type, _ what: @autoclosure () -> String) throws -> T {
        guard let value: T = readInteger() else { throw ProtocolError.truncated(what()) }
        return value
    }

    mutating func writeBool(_ value: Bool) { writeInteger(UInt8(value ? 1 : 0)) }

    mutating func readBool(_ what: String) throws -> Bool {
        switch try readOrThrow(UInt8.self, what) {
        case 0: false
        case 1: true
        default: throw ProtocolError.invalidValue(what)
        }
    }

    mutating func writeWireString(_ string: String) {
        let bytes = Array(string.utf8)
        writeInteger(UInt16(bytes.count))
        writeBytes(bytes)
    }

    mutating func readWireString(_ what: String) throws -> String {
        let length = try readOrThrow(UInt16.self, what)
        guard let bytes = readBytes(length: Int(length)) else { throw ProtocolError.truncated(what) }
        guard let string = String(validating: bytes, as: UTF8.self) else { throw ProtocolError.invalidValue(what) }
        return string
    }

    mutating func writeFID(_ fid: FID) {
        writeInteger(fid.volume)
        writeInteger(fid.vnode)
        writeInteger(fid.unique)
    }

    mutating func readFID() throws -> FID {
        FID(volume: try readOrThrow(UInt32.self, "FID"), vnode: try readOrThrow(UInt64.self, "FID"),
            unique: try readOrThrow(UInt32.self, "FID"))
    }

    mutating func writeFIDs(_ fids: [FID]) {
        writeInteger(UInt32(fids.count))
        for fid in fids { writeFID(fid) }
    }

    mutating func readFIDs() throws -> [FID] {
        let count = try readOrThrow(UInt32.self, "FID list")
        guard Int(count) * 16 <= readableBytes else { throw ProtocolError.truncated("FID list") }
        return try (0..<count).map { _ in try readFID() }
    }

    mutating func writeTimespec(_ t: Timespec) {
        writeInteger(t.seconds)
        writeInteger(t.nanoseconds)
    }

    mutating func readTimespec() throws -> Timespec {
        let seconds = try readOrThrow(Int64.self, "time")
        let nanoseconds = try readOrThrow(UInt32.self, "time")
        guard nanoseconds < 1_000_000_000 else { throw ProtocolError.invalidValue("nanoseconds") }
        return Timespec(seconds: seconds, nanoseconds: nanoseconds)
    }

    mutating func writeFileType(_ type: FileType) { writeInteger(type.rawValue) }

    mutating func readFileType() throws -> FileType {
        let raw = try readOrThrow(UInt8.self, "file type")
        guard let type = FileType(rawValue: raw) else { throw ProtocolError.invalidValue("file type \(raw)") }
        return type
    }

    mutating func writeStatus(_ s: FileStatus) {
        writeFID(s.fid)
        writeFileType(s.type)
        writeInteger(s.mode)
        writeInteger(s.uid)
        writeInteger(s.gid)
        writeInteger(s.size)
        writeInteger(s.linkCount)
        writeInteger(s.dataVersion)
        writeTimespec(s.atime)
        writeTimespec(s.mtime)
        writeTimespec(s.ctime)
        writeInteger(s.rdev)
    }

    mutating func readStatus() throws -> FileStatus {
        FileStatus(
            fid: try readFID(), type: try readFileType(),
            mode: try readOrThrow(UInt32.self, "mode"), uid: try readOrThrow(UInt32.self, "uid"),
            gid: try readOrThrow(UInt32.self, "gid"), size: try readOrThrow(UInt64.self, "size"),
            linkCount: try readOrThrow(UInt32.self, "link count"),
            dataVersion: try readOrThrow(UInt64.self, "data version"),
            atime: try readTimespec(), mtime: try readTimespec(), ctime: try readTimespec(),
            rdev: try readOrThrow(UInt64.self, "rdev"))
    }

    mutating func writeOptionalStatus(_ s: FileStatus?) {
        writeBool(s != nil)
        if let s { writeStatus(s) }
    }

    mutating func readOptionalStatus() throws -> FileStatus? {
        try readBool("status presence") ? try readStatus() : nil
    }

    mutating func writeOptional<T: FixedWidthInteger>(_ value: T?) {
        writeBool(value != nil)
        if let value { writeInteger(value) }
    }

    mutating func readOptional<T: FixedWidthInteger>(_: T.Type, _ what: String) throws -> T? {
        try readBool(what) ? try readOrThrow(T.self, what) : nil
    }

    mutating func writeTimeToSet(_ t: TimeToSet?) {
        switch t {
        case nil: writeInteger(UInt8(0))
        case .now: writeInteger(UInt8(1))
        case .at(let ts):
            writeInteger(UInt8(2))
            writeTimespec(ts)
        }
    }

    mutating func readTimeToSet() throws -> TimeToSet? {
        switch try readOrThrow(UInt8.self, "time to set") {
        case 0: nil
        case 1: .now
        case 2: .at(try readTimespec())
        default: throw ProtocolError.invalidValue("time to set")
        }
    }
}
