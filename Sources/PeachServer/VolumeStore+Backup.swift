import Foundation
import GRDB
import PeachProtocol
import Synchronization

/// `peach admin backup` and `peach server --restore`: the volume as a tar archive of
/// `volume.sqlite` (with the small files stored inline) and `data/<vnode>.<version>`, the version
/// files its database names.
///
/// Consistent: while SQLite's writer is held (changes wait, reads go on), the database is copied
/// with SQLite's online backup and every current version file is hard-linked into a staging
/// directory. Version files are never changed once written, except by an NFS WRITE, which
/// copies a file with a second link before writing while a backup runs (`isLinkedIntoBackup`).
/// Then, with the writer free again, `TarWriter` packs the staging directory into a file the
/// caller streams and drops.
extension VolumeStore {
    public struct Backup: Sendable {
        /// The archive, opened and already unlinked: closing it frees the space.
        public var handle: FileHandle
        public var size: UInt64
        public var files: Int
        /// How long changes waited while the snapshot was taken.
        public var writerHeldMilliseconds: Double
    }

    /// The staging directory's (and archive's) name in the root; what start-up removes.
    static let backupStagingPrefix = "backup-staging-"

    /// Takes a backup. Throws `busy` while another runs on this volume, `noSpace` when the
    /// root's disk cannot hold a second copy of the volume.
    public func backup() throws -> Backup {
        guard backupRunning.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else {
            throw StatusCode.busy
        }
        defer { backupRunning.store(false, ordering: .releasing) }
        // NFS WRITEs that start from now on see `backupRunning` and copy a version the backup
        // links; those already writing a version file in place are waited for. (Set first, so
        // that a stream of WRITEs cannot keep the backup out.)
        fileWorkGate.exclusive {}
        try requireSpaceForBackup()
        let staging = root + "/" + Self.backupStagingPrefix + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: staging) }
        try FileManager.default.createDirectory(atPath: staging + "/data", withIntermediateDirectories: true)
        let started = ContinuousClock.now
        let files = try snapshot(into: staging)
        let held = ContinuousClock.now - started
        let archive = staging + ".tar"
        defer { unlink(archive) }
        // A failure is logged by the caller and answered as an I/O error.
        try pack(staging, into: archive)
        guard let handle = FileHandle(forReadingAtPath: archive) else { throw StatusCode.ioError }
        var st = stat()
        guard fstat(handle.fileDescriptor, &st) == 0 else { throw StatusCode.ioError }
        let size = UInt64(st.st_size)
        let heldMilliseconds = Double(held.components.seconds) * 1000 + Double(held.components.attoseconds) / 1e15
        return Backup(handle: handle, size: size, files: files, writerHeldMilliseconds: heldMilliseconds)
    }

    /// The database and links to its version files in `staging`, with changes held off.
    private func snapshot(into staging: String) throws -> Int {
        let copy = try DatabaseQueue(path: staging + "/volume.sqlite")
        defer { try? copy.close() }
        return try writerGate.run { try database.writeWithoutTransaction { db in
            try copy.writeWithoutTransaction { target in try db.backup(to: target) }
            // Inline content came with the database copy.
            let versions = try Row.fetchAll(db, sql: """
                SELECT id, dataVersion, size FROM vnode WHERE type = ? AND id NOT IN (SELECT vnode FROM inlineContent)
                """, arguments: [FileType.regular.rawValue])
            var linked = 0
            for row in versions {
                let (vnode, version, size): (Int64, Int64, Int64) = (row["id"], row["dataVersion"], row["size"])
                let source = dataPath(vnode: vnode, version: UInt64(version))
                if Glibc.link(source, "\(staging)/data/\(vnode).\(version)") == 0 {
                    linked += 1
                } else if !(errno == ENOENT && size == 0) {
                    // An empty file may have no version file; any other is part of the volume.
                    throw StatusCode.ioError
                }
            }
            return linked
        } }
    }

    /// The staging directory as a tar archive: volume.sqlite, data/, then the version files.
    private func pack(_ staging: String, into archive: String) throws {
        let writer = try TarWriter(path: archive)
        do {
            try writer.addFile("volume.sqlite", from: staging + "/volume.sqlite")
            try writer.addDirectory("data/")
            for name in try FileManager.default.contentsOfDirectory(atPath: staging + "/data").sorted() {
                try writer.addFile("data/" + name, from: staging + "/data/" + name)
            }
            try writer.finish()
        } catch {
            writer.abandon()
            throw error
        }
    }

    /// The archive is about as large as the volume: refuse before filling the disk.
    private func requireSpaceForBackup() throws {
        var st = statvfs()
        guard statvfs(dataDirectory, &st) == 0 else { throw StatusCode.ioError }
        let free = UInt64(st.f_bavail) * UInt64(st.f_frsize)
        var database = stat()
        let databaseSize = stat(root + "/volume.sqlite", &database) == 0 ? UInt64(database.st_size) : 0
        guard free > (try volumeBytes()) + databaseSize + DiskReserve.maximum else { throw StatusCode.noSpace }
    }
}
