import Foundation
import GRDB
import PeachProtocol

/// Small files live in the volume's database (issue 19). A regular file's content is in one of
/// two places:
/// - **inline**: a row of `inlineContent`, when the file is at most `inlineMaximum` bytes (64 KiB
///   by default, `--inline-max`). It is written in the transaction that changes the file's
///   status, so a store of a small file is one transaction (and at `--sync onclose` one shared
///   fsync of the log), with no file made or removed on the server's disk;
/// - **a version file** `data/<vnode>.<dataVersion>`, for larger files, never changed once
///   written (except by an NFS WRITE, see `write`).
///
/// A file that grows past the limit moves to a version file at that change; one that shrinks
/// below it moves back at its next store, truncate or WRITE. A regular file with neither (a new,
/// empty file) is empty. Whole versions stay whole: a FetchData reads a small file's bytes in its
/// own transaction, and a crash leaves the transaction committed or not.
extension VolumeStore {
    public static let defaultInlineMaximum = 64 << 10

    /// What a StoreData's data frames became: a small store's bytes, kept in memory by the
    /// connection, or the upload file a larger one was written to.
    public enum UploadedContent: Sendable {
        case bytes([UInt8])
        case file(String)
    }

    /// `vnode`'s content if it is stored inline.
    static func inlineBytes(_ db: Database, vnode: Int64) throws -> [UInt8]? {
        try Row.fetchOne(db, cached: "SELECT data FROM inlineContent WHERE vnode = ?", arguments: [vnode]).map { row in
            (row["data"] as Data?).map { [UInt8]($0) } ?? []
        }
    }

    static func setInline(_ db: Database, vnode: Int64, _ bytes: [UInt8]) throws {
        try db.execute(cached: "INSERT OR REPLACE INTO inlineContent (vnode, data) VALUES (?, ?)",
                       arguments: [vnode, Data(bytes)])
    }

    /// Drops `vnode`'s inline content; true if it had some (then it has no version file).
    @discardableResult
    static func dropInline(_ db: Database, vnode: Int64) throws -> Bool {
        try db.execute(cached: "DELETE FROM inlineContent WHERE vnode = ?", arguments: [vnode])
        return db.changesCount > 0
    }

    /// The first `length` bytes of `vnode`'s current content, whichever form it has, zero-filled
    /// past its end (a truncate that grows the file). Only for small lengths: it is held in memory.
    func smallContent(_ db: Database, vnode: Int64, status: FileStatus, length: Int) throws -> [UInt8] {
        var bytes: [UInt8]
        if let inline = try Self.inlineBytes(db, vnode: vnode) {
            bytes = Array(inline.prefix(length))
        } else if status.size > 0 {
            // The version file the committed row names: it exists while the writer is held.
            let fd = open(dataPath(vnode: vnode, version: status.dataVersion), O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw StatusCode.ioError }
            defer { close(fd) }
            let wanted = Int(min(UInt64(length), status.size))
            bytes = [UInt8](repeating: 0, count: wanted)
            var done = 0
            while done < wanted {
                let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, wanted - done, off_t(done)) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw StatusCode.ioError }
                done += n
            }
        } else {
            bytes = []
        }
        if bytes.count < length { bytes += [UInt8](repeating: 0, count: length - bytes.count) }
        return bytes
    }

    /// Bytes `range` of a small file stored inline, or nil if its content is in a version file.
    func inlinePart(_ db: Database, vnode: Int64, range: ByteRange) throws -> [UInt8]? {
        try Self.inlineBytes(db, vnode: vnode).map { Self.part($0, range) }
    }

    static func part(_ bytes: [UInt8], _ range: ByteRange) -> [UInt8] {
        let part = range.clamped(to: UInt64(bytes.count))
        return Array(bytes[Int(part.lowerBound)..<Int(part.upperBound)])
    }

    /// Files stored inline and their bytes (`admin stats`).
    public func inlineUsage() throws -> (files: Int, bytes: Int64) {
        try database.read { db in
            let row = try Row.fetchOne(db, sql: "SELECT COUNT(*) AS files, COALESCE(SUM(length(data)), 0) AS bytes FROM inlineContent")
            return (row?["files"] ?? 0, row?["bytes"] ?? 0)
        }
    }
}
