import GRDB
import GRDBSQLite
import PeachProtocol

/// Reads and writes of the `vnode` table in the terms the protocol speaks.
extension FileStatus {
    /// The columns `init(row:)` reads, in its order (by index: no name lookups per row).
    static let columns = """
        id, uniquifier, type, mode, uid, gid, size, linkCount, dataVersion, atimeSeconds, atimeNanoseconds,
        mtimeSeconds, mtimeNanoseconds, ctimeSeconds, ctimeNanoseconds, rdev
        """

    init(row: Row) throws {
        let rawType: UInt8 = row[2]
        guard let type = FileType(rawValue: rawType) else { throw StatusCode.ioError }
        self.init(
            fid: FID(volume: 1, vnode: UInt64(row[0] as Int64), unique: UInt32(row[1] as Int64)),
            type: type,
            mode: UInt32(row[3] as Int64), uid: UInt32(row[4] as Int64), gid: UInt32(row[5] as Int64),
            size: UInt64(clamping: row[6] as Int64), linkCount: UInt32(row[7] as Int64),
            dataVersion: UInt64(row[8] as Int64),
            atime: Timespec(seconds: row[9], nanoseconds: UInt32(row[10] as Int64)),
            mtime: Timespec(seconds: row[11], nanoseconds: UInt32(row[12] as Int64)),
            ctime: Timespec(seconds: row[13], nanoseconds: UInt32(row[14] as Int64)),
            rdev: UInt64(bitPattern: row[15] as Int64))
    }
}

extension FileStatus {
    /// The row `statement` stands on, its columns those of `columns`, read with SQLite's C API.
    init(steppedStatement statement: OpaquePointer) throws {
        func int(_ column: Int32) -> Int64 { sqlite3_column_int64(statement, column) }
        guard let type = FileType(rawValue: UInt8(truncatingIfNeeded: int(2))) else { throw StatusCode.ioError }
        self.init(
            fid: FID(volume: 1, vnode: UInt64(int(0)), unique: UInt32(truncatingIfNeeded: int(1))),
            type: type,
            mode: UInt32(truncatingIfNeeded: int(3)), uid: UInt32(truncatingIfNeeded: int(4)), gid: UInt32(truncatingIfNeeded: int(5)),
            size: UInt64(clamping: int(6)), linkCount: UInt32(truncatingIfNeeded: int(7)),
            dataVersion: UInt64(int(8)),
            atime: Timespec(seconds: int(9), nanoseconds: UInt32(truncatingIfNeeded: int(10))),
            mtime: Timespec(seconds: int(11), nanoseconds: UInt32(truncatingIfNeeded: int(12))),
            ctime: Timespec(seconds: int(13), nanoseconds: UInt32(truncatingIfNeeded: int(14))),
            rdev: UInt64(bitPattern: int(15)))
    }
}

enum VnodeTable {
    /// The status of `vnode`, or `.stale` when it no longer exists. The busiest statement of the
    /// server (two to four per request): stepped with SQLite's C API rather than read through a
    /// GRDB `Row`, which builds a dictionary of lower-cased column names for every row.
    static func status(_ db: Database, _ vnode: Int64) throws -> FileStatus {
        let statement = try db.cachedStatement(sql: "SELECT \(FileStatus.columns) FROM vnode WHERE id = ?")
        try statement.setArguments([vnode])
        let raw = statement.sqliteStatement
        defer { sqlite3_reset(raw) }
        switch sqlite3_step(raw) {
        case SQLITE_ROW: return try FileStatus(steppedStatement: raw)
        case SQLITE_DONE: throw StatusCode.stale
        case let code:
            throw DatabaseError(resultCode: ResultCode(rawValue: code), message: String(cString: sqlite3_errmsg(db.sqliteConnection)))
        }
    }

    /// Checks that a FID still names the vnode it named, and returns its number.
    static func resolve(_ db: Database, _ fid: FID) throws -> (vnode: Int64, status: FileStatus) {
        guard fid.volume == 1, fid.vnode <= UInt64(Int64.max) else { throw StatusCode.stale }
        let s = try status(db, Int64(fid.vnode))
        guard s.fid.unique == fid.unique else { throw StatusCode.stale }
        return (Int64(fid.vnode), s)
    }

    static func directory(_ db: Database, _ fid: FID) throws -> (vnode: Int64, status: FileStatus) {
        let resolved = try resolve(db, fid)
        guard resolved.status.type == .directory else { throw StatusCode.notDirectory }
        return resolved
    }

    /// Sets ctime (and with `content`, mtime and a new data version) to now.
    static func touch(_ db: Database, _ vnode: Int64, content: Bool, now: Timespec) throws {
        if content {
            try db.execute(cached: """
                UPDATE vnode SET mtimeSeconds = ?, mtimeNanoseconds = ?, ctimeSeconds = ?, ctimeNanoseconds = ?,
                    dataVersion = dataVersion + 1 WHERE id = ?
                """, arguments: [now.seconds, now.nanoseconds, now.seconds, now.nanoseconds, vnode])
        } else {
            try db.execute(cached: "UPDATE vnode SET ctimeSeconds = ?, ctimeNanoseconds = ? WHERE id = ?",
                           arguments: [now.seconds, now.nanoseconds, vnode])
        }
    }

    /// A new vnode. Its uniquifier is random (the root's is 1), as an NFS server's generation
    /// numbers are: a FID cannot be guessed from the vnode numbers, which count up, so a user
    /// reaches an object only through a path it may search, or a FID it was given.
    static func insert(_ db: Database, type: FileType, mode: UInt32, uid: UInt32, gid: UInt32, size: UInt64,
                       linkCount: UInt32, parent: Int64?, rdev: UInt64, symlinkTarget: String?, now: Timespec,
                       uniquifier: UInt32 = UInt32.random(in: 2...UInt32.max)) throws -> Int64 {
        try db.execute(cached: """
            INSERT INTO vnode (uniquifier, type, mode, uid, gid, size, linkCount, dataVersion,
                atimeSeconds, atimeNanoseconds, mtimeSeconds, mtimeNanoseconds, ctimeSeconds, ctimeNanoseconds,
                rdev, parent, symlinkTarget)
            VALUES (?, ?, ?, ?, ?, ?, ?, 1,
                    ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, arguments: [Int64(uniquifier), type.rawValue, mode & 0o7777, uid, gid, Int64(size), linkCount,
                             now.seconds, now.nanoseconds, now.seconds, now.nanoseconds, now.seconds, now.nanoseconds,
                             Int64(bitPattern: rdev), parent, symlinkTarget])
        return db.lastInsertedRowID
    }

    /// A directory's entries, sorted by name.
    static func entries(_ db: Database, directory: Int64) throws -> [DirectoryEntry] {
        let rows = try Row.fetchAll(db, cached: """
            SELECT dirEntry.name, vnode.id, vnode.uniquifier, vnode.type FROM dirEntry
            JOIN vnode ON vnode.id = dirEntry.child WHERE dirEntry.directory = ? ORDER BY dirEntry.name
            """, arguments: [directory])
        return rows.map { row in
            DirectoryEntry(name: row["name"], fid: FID(vnode: UInt64(row["id"] as Int64), unique: UInt32(row["uniquifier"] as Int64)),
                           type: FileType(rawValue: row["type"]) ?? .regular)
        }
    }

    static func lookup(_ db: Database, directory: Int64, name: String) throws -> Int64? {
        try Int64.fetchOne(db, cached: "SELECT child FROM dirEntry WHERE directory = ? AND name = ?",
                           arguments: [directory, name])
    }
}
