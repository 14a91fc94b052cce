import Foundation
import GRDB
import PeachProtocol

/// `peach server --restore FILE --root DIR`: turns an archive from `peach admin backup` back
/// into a server root. Nothing is touched unless DIR is new or empty, and a bad archive leaves
/// DIR as it was.
public enum VolumeRestore {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public struct Restored: Sendable {
        public var files: Int
        public var bytes: UInt64
    }

    public static func restore(archive: String, into root: String) throws -> Restored {
        let fm = FileManager.default
        guard fm.isReadableFile(atPath: archive) else { throw Failure(description: "cannot read \(archive)") }
        var isDirectory: ObjCBool = false
        let existed = fm.fileExists(atPath: root, isDirectory: &isDirectory)
        if existed && !isDirectory.boolValue { throw Failure(description: "\(root) is not a directory") }
        if let existing = try? fm.contentsOfDirectory(atPath: root), !existing.isEmpty {
            throw Failure(description: "\(root) is not empty: restore into a new directory")
        }
        try fm.createDirectory(atPath: root, withIntermediateDirectories: true)
        do {
            try unpack(archive, into: root)
            let restored = try check(root: root)
            try startNewIncarnation(root: root)
            return restored
        } catch {
            // Back to empty, as it was, or gone if this made it.
            for name in (try? fm.contentsOfDirectory(atPath: root)) ?? [] { try? fm.removeItem(atPath: root + "/" + name) }
            if !existed { try? fm.removeItem(atPath: root) }
            throw (error as? TarReader.Failure).map { Failure(description: "\(archive): \($0.description)") } ?? error
        }
    }

    /// Creates `root/data` and every file of the archive itself: only the names a backup holds
    /// (volume.sqlite, data/, data/VNODE.VERSION), only regular files and that one directory,
    /// each made new (O_EXCL, O_NOFOLLOW), so no member can be a link, a device or a FIFO, name
    /// a path outside `root`, or be written through anything the archive made.
    private static func unpack(_ archive: String, into root: String) throws {
        var reader = try TarReader(path: archive)
        defer { reader.close() }
        guard mkdir(root + "/data", 0o755) == 0 else {
            throw Failure(description: "cannot create \(root)/data: \(String(cString: strerror(errno)))")
        }
        var sawDatabase = false
        while let member = try reader.next() {
            let isDataDirectory = member.name == "data/" || member.name == "data"
            guard isDataDirectory || member.name == "volume.sqlite" || isVersionFileName(member.name) else {
                throw Failure(description: "\(archive) is not a PeachFS backup: it holds '\(member.name)'")
            }
            let expected: TarReader.Member.Kind = isDataDirectory ? .directory : .regular
            guard member.kind == expected else {
                throw Failure(description: "\(archive) is not a PeachFS backup: '\(member.name)' is not a \(isDataDirectory ? "directory" : "regular file")")
            }
            if isDataDirectory { continue }
            sawDatabase = sawDatabase || member.name == "volume.sqlite"
            let path = root + "/" + member.name
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            guard fd >= 0 else {
                let reason = errno == EEXIST ? "it holds '\(member.name)' twice" : String(cString: strerror(errno))
                throw Failure(description: "cannot restore '\(member.name)': \(reason)")
            }
            defer { close(fd) }
            try reader.copyContent(of: member, to: fd)
            guard fsync(fd) == 0 else { throw Failure(description: "cannot write '\(member.name)': \(String(cString: strerror(errno)))") }
        }
        guard sawDatabase else { throw Failure(description: "\(archive) is not a PeachFS backup: no volume.sqlite") }
    }

    /// `data/VNODE.VERSION`, both decimal.
    private static func isVersionFileName(_ member: String) -> Bool {
        let parts = member.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0] == "data" else { return false }
        let name = parts[1].split(separator: ".", omittingEmptySubsequences: false)
        return name.count == 2 && name.allSatisfy { !$0.isEmpty && $0.count <= 20 && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }
    }

    /// The database is sound and every file's content is there, at its size.
    private static func check(root: String) throws -> Restored {
        let database = try DatabaseQueue(path: root + "/volume.sqlite")
        defer { try? database.close() }
        return try database.read { db in
            let verdict = try String.fetchOne(db, sql: "PRAGMA integrity_check") ?? "no answer"
            guard verdict == "ok" else { throw Failure(description: "the backup's database is damaged: \(verdict)") }
            var restored = Restored(files: 0, bytes: 0)
            // A backup made before small files went inline has no such table.
            let inlineLength = try db.tableExists("inlineContent")
                ? "(SELECT length(data) FROM inlineContent WHERE inlineContent.vnode = vnode.id)" : "NULL"
            for row in try Row.fetchAll(db, sql: "SELECT id, dataVersion, size, \(inlineLength) AS inlineLength FROM vnode WHERE type = ?",
                                        arguments: [FileType.regular.rawValue]) {
                let (vnode, version, size): (Int64, Int64, Int64) = (row["id"], row["dataVersion"], row["size"])
                if let stored = row["inlineLength"] as Int64? {
                    guard stored == size else {
                        throw Failure(description: "the backup's content of vnode \(vnode) is \(stored) bytes, its size \(size)")
                    }
                    restored.files += 1
                    restored.bytes += UInt64(size)
                    continue
                }
                var st = stat()
                let present = stat("\(root)/data/\(vnode).\(version)", &st) == 0
                guard size == 0 || (present && st.st_size == size) else {
                    throw Failure(description: "the backup lacks the content of vnode \(vnode) (version \(version), \(size) bytes)")
                }
                restored.files += 1
                restored.bytes += UInt64(size)
            }
            return restored
        }
    }

    /// How far a restore moves every data version: past any version the old server can have
    /// reached after the backup was taken.
    static let versionLeap: Int64 = 1 << 32

    /// The restored volume is older than what clients may have cached, and the old server went on
    /// numbering files and versions after the backup. So that no client takes a cached copy for
    /// the restored one: no promise of the old server holds, every client revalidates its cache
    /// when it next says Hello, every data version leaps ahead (its version file renamed to
    /// match). Files made from now on get random uniquifiers, as all new files do, so a vnode
    /// number the old server used after the backup names a new FID here.
    private static func startNewIncarnation(root: String) throws {
        let database = try DatabaseQueue(path: root + "/volume.sqlite")
        defer { try? database.close() }
        try database.write { db in
            for row in try Row.fetchAll(db, sql: "SELECT id, dataVersion FROM vnode WHERE type = ?", arguments: [FileType.regular.rawValue]) {
                let (vnode, version): (Int64, Int64) = (row["id"], row["dataVersion"])
                let old = "\(root)/data/\(vnode).\(version)"
                guard access(old, F_OK) == 0 else { continue }  // an empty file may have none
                guard rename(old, "\(root)/data/\(vnode).\(version + versionLeap)") == 0 else {
                    throw Failure(description: "cannot rename \(old): \(String(cString: strerror(errno)))")
                }
            }
            try db.execute(sql: """
                DELETE FROM callBack; UPDATE client SET callBacksLost = 1; DELETE FROM replay;
                UPDATE vnode SET dataVersion = dataVersion + ?;
                INSERT OR REPLACE INTO serverState (key, value) VALUES ('restored', 1);
                """, arguments: [versionLeap])
        }
    }
}
