import Foundation
import NIOConcurrencyHelpers
import PeachProtocol
import PeachSupport
import PeachTesting
import Testing
@testable import PeachServer

/// `VolumeStore.backup` and `VolumeRestore` on real SQLite files and real tar archives: a
/// restore of anything but a PeachFS backup into an empty directory is refused, and leaves it as it was.
@Suite("Backup and restore")
struct BackupRestoreTests {
    /// A store with one file of `content`, its backup at `archive`, in `directory`. Its content
    /// is in a version file (no inline storage), the form whose files the archive carries.
    func backedUpStore(in directory: TemporaryDirectory, content: String = "hello") throws -> (archive: String, fid: FID) {
        let store = try VolumeStore(root: directory.path + "/server", inlineMaximum: 0)
        defer { store.releaseRoot() }
        _ = try store.introduce(client: "a", epoch: 1)
        let file = try store.create(CreateRequest(directory: .root, name: "f", type: .regular, mode: 0o644, uid: 0, gid: 0),
                                    client: "a").value.target!
        let upload = store.newUploadPath()
        _ = FileManager.default.createFile(atPath: upload, contents: Data(content.utf8))
        _ = try store.store(file.fid, client: "a", uploadPath: upload, size: UInt64(content.utf8.count), mtime: .now())
        let backup = try store.backup()
        let archive = directory.path + "/backup.tar"
        _ = FileManager.default.createFile(atPath: archive, contents: try backup.handle.readToEnd())
        #expect(backup.files == 1)
        return (archive, file.fid)
    }

    @Test("a backup restores into a new root that serves the same file, with no promise of the old server left")
    func roundTrip() throws {
        let directory = try TemporaryDirectory(prefix: "peach-backup")
        defer { directory.remove() }
        let (archive, fid) = try backedUpStore(in: directory)
        // A plain archive: GNU tar lists it, and unpacks the file's content as it was.
        let listing = try shell("tar -tf '\(archive)'")
        #expect(listing.status == 0 && listing.output.split(separator: "\n").sorted() == ["data/", "data/\(fid.vnode).2", "volume.sqlite"],
                "\(listing.output)")
        #expect(try shell("tar -xOf '\(archive)' data/\(fid.vnode).2").output == "hello")
        let restored = try VolumeRestore.restore(archive: archive, into: directory.path + "/restored")
        #expect(restored.files == 1 && restored.bytes == 5)
        let store = try VolumeStore(root: directory.path + "/restored")
        defer { store.releaseRoot() }
        #expect(try store.callBackCount() == 0)
        #expect(try store.introduce(client: "a", epoch: 1))  // it must revalidate its cache
        // A new incarnation: versions leap past the old server's, new files get new FIDs.
        #expect(try store.fetchStatus(fid, client: .stateless("reader")).0.dataVersion > VolumeRestore.versionLeap)
        let made = try store.create(CreateRequest(directory: .root, name: "g", type: .regular, mode: 0o644, uid: 0, gid: 0),
                                    client: .stateless("reader")).value.target!
        #expect(made.fid.unique != fid.unique && made.fid.unique != FID.root.unique)
        guard case .file(let handle, let length) = try store.fetchData(fid, client: .stateless("reader")).2 else {
            Issue.record("no content")
            return
        }
        #expect(try handle.read(upToCount: Int(length)) == Data("hello".utf8))
    }

    @Test("small files stored inline travel in the backup's database; a restore serves both forms and checks their sizes")
    func inlineContent() throws {
        let directory = try TemporaryDirectory(prefix: "peach-backup")
        defer { directory.remove() }
        let store = try VolumeStore(root: directory.path + "/server")
        _ = try store.introduce(client: "a", epoch: 1)
        func put(_ name: String, _ bytes: [UInt8]) throws -> FID {
            let fid = try store.create(CreateRequest(directory: .root, name: name, type: .regular, mode: 0o644, uid: 0, gid: 0),
                                       client: "a").value.target!.fid
            let upload = store.newUploadPath()
            _ = FileManager.default.createFile(atPath: upload, contents: Data(bytes))
            _ = try store.store(fid, client: "a", uploadPath: upload, size: UInt64(bytes.count), mtime: .now())
            return fid
        }
        let small = try put("small", Array("inline".utf8))
        let large = try put("large", [UInt8](repeating: 7, count: 100_000))
        let backup = try store.backup()
        let archive = directory.path + "/backup.tar"
        _ = FileManager.default.createFile(atPath: archive, contents: try backup.handle.readToEnd())
        #expect(backup.files == 1)  // the large file's version; the small one is in volume.sqlite
        store.releaseRoot()
        let restored = try VolumeRestore.restore(archive: archive, into: directory.path + "/restored")
        #expect(restored.files == 2 && restored.bytes == 100_006)
        let again = try VolumeStore(root: directory.path + "/restored")
        #expect(try again.read(small, offset: 0, count: 100).1 == Array("inline".utf8))
        #expect(try again.read(large, offset: 99_990, count: 100).1 == [UInt8](repeating: 7, count: 10))
        again.releaseRoot()

        // A crafted archive whose inline content is shorter than its file's size is refused.
        let work = directory.path + "/crafted"
        #expect(try shell("mkdir '\(work)' && tar -xf '\(archive)' -C '\(work)'").status == 0)
        let shorten = "import sqlite3; c = sqlite3.connect('\(work)/volume.sqlite'); c.execute(\\\"UPDATE inlineContent SET data = x'00'\\\"); c.commit()"
        #expect(try shell("python3 -c \"\(shorten)\"").status == 0)
        let crafted = directory.path + "/crafted.tar"
        #expect(try shell("tar -cf '\(crafted)' -C '\(work)' volume.sqlite data").status == 0)
        #expect(throws: (any Error).self) { try VolumeRestore.restore(archive: crafted, into: directory.path + "/refused") }
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: directory.path + "/refused")) ?? []).isEmpty)
    }

    @Test("a restore into a directory that holds anything is refused, and the directory is left alone")
    func refusesNonEmptyRoot() throws {
        let directory = try TemporaryDirectory(prefix: "peach-backup")
        defer { directory.remove() }
        let (archive, _) = try backedUpStore(in: directory)
        let root = directory.path + "/busy"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: root + "/keep", contents: Data("mine".utf8))
        #expect(throws: VolumeRestore.Failure.self) { try VolumeRestore.restore(archive: archive, into: root) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: root) == ["keep"])
    }

    @Test("archives that are not PeachFS backups are refused and write nothing", arguments: ["escape", "foreign", "garbage", "incomplete", "huge-size"])
    func refusesOtherArchives(kind: String) throws {
        let directory = try TemporaryDirectory(prefix: "peach-backup")
        defer { directory.remove() }
        let (good, _) = try backedUpStore(in: directory)
        let work = directory.path + "/work"
        try FileManager.default.createDirectory(atPath: work + "/data", withIntermediateDirectories: true)
        let archive = directory.path + "/\(kind).tar"
        switch kind {
        case "escape":
            // A member that would land outside the root (-P keeps the ../ tar would strip).
            _ = FileManager.default.createFile(atPath: directory.path + "/escaped", contents: Data())
            _ = try shell("cd '\(work)' && tar -xf '\(good)' && tar -P -cf '\(archive)' volume.sqlite data ../escaped && rm ../escaped")
        case "foreign":
            _ = FileManager.default.createFile(atPath: work + "/data/notes.txt", contents: Data())
            _ = try shell("cd '\(work)' && tar -xf '\(good)' && tar -cf '\(archive)' volume.sqlite data")
        case "garbage":
            _ = FileManager.default.createFile(atPath: archive, contents: Data(repeating: 0x41, count: 10_000))
        case "huge-size":
            // One header announcing a member of nearly 2^64 bytes (GNU base-256): offsets past it would overflow.
            _ = try shell("""
                python3 -c "
                h = bytearray(512); h[0:13] = b'volume.sqlite'; h[124:136] = b'\\x80' + b'\\x00' * 3 + b'\\xff' * 8; h[156:157] = b'0'
                h[257:263] = b'ustar\\x00'; h[148:156] = b' ' * 8; s = sum(h); h[148:155] = ('%06o' % s).encode() + b'\\x00'
                open('\(archive)', 'wb').write(bytes(h) + bytes(1024))"
                """)
        default:
            // The database names a version file the archive lacks.
            _ = try shell("cd '\(work)' && tar -xf '\(good)' && rm data/* && tar -cf '\(archive)' volume.sqlite data")
        }
        let root = directory.path + "/restored"
        #expect(throws: VolumeRestore.Failure.self) { try VolumeRestore.restore(archive: archive, into: root) }
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).isEmpty)
        #expect(!FileManager.default.fileExists(atPath: directory.path + "/escaped"))
    }

    @Test("archive members that are links, FIFOs or devices are refused: nothing outside the root is read, written or removed",
          arguments: ["data-symlink", "version-symlink", "version-hardlink", "fifo", "device"])
    func refusesMembersOfOtherTypes(kind: String) throws {
        let directory = try TemporaryDirectory(prefix: "peach-backup")
        defer { directory.remove() }
        let (good, _) = try backedUpStore(in: directory)
        let work = directory.path + "/work"
        let outside = directory.path + "/outside"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        // The size of the backed-up file, so that the restore's size check alone would not refuse a link to it.
        _ = FileManager.default.createFile(atPath: outside + "/precious", contents: Data("keep!".utf8))
        let archive = directory.path + "/\(kind).tar"
        let unpacked = "cd '\(work)' && tar -xf '\(good)' && v=$(ls data) && "
        switch kind {
        case "data-symlink":
            // Starting a server on such a root used to remove every file of the linked directory.
            _ = try shell(unpacked + "cp data/$v '\(outside)/' && rm -r data && ln -s '\(outside)' data && tar -cf '\(archive)' volume.sqlite data")
        case "version-symlink":
            // The server read through it, and an NFS WRITE wrote through it, as root.
            _ = try shell(unpacked + "rm data/$v && ln -s '\(outside)/precious' data/$v && tar -cf '\(archive)' volume.sqlite data")
        case "version-hardlink":
            _ = try shell(unpacked + "rm data/$v && cp '\(outside)/precious' data/9.9 && ln data/9.9 data/$v && tar -cf '\(archive)' volume.sqlite data")
        case "fifo":
            // A WRITE to it hung the server.
            _ = try shell(unpacked + "mkfifo data/77.1 && tar -cf '\(archive)' volume.sqlite data")
        default:
            _ = try shell(unpacked + "mknod data/77.1 c 1 3 && tar -cf '\(archive)' volume.sqlite data")
        }
        let root = directory.path + "/restored"
        #expect(throws: VolumeRestore.Failure.self) { try VolumeRestore.restore(archive: archive, into: root) }
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: outside).contains("precious"))
        #expect(try String(contentsOfFile: outside + "/precious", encoding: .utf8) == "keep!")
    }

    @Test("a backup taken while stores replace the files it holds succeeds, and restores every file whole")
    func backupUnderStores() throws {
        let directory = try TemporaryDirectory(prefix: "peach-backup")
        defer { directory.remove() }
        let store = try VolumeStore(root: directory.path + "/server")
        defer { store.releaseRoot() }
        _ = try store.introduce(client: "w", epoch: 1)
        let content: @Sendable (Int, Int) -> [UInt8] = { i, round in [UInt8](repeating: UInt8(truncatingIfNeeded: i &+ round), count: 2 << 20) }
        @Sendable func put(_ fid: FID, _ bytes: [UInt8]) throws {
            let upload = store.newUploadPath()
            _ = FileManager.default.createFile(atPath: upload, contents: Data(bytes))
            _ = try store.store(fid, client: "w", uploadPath: upload, size: UInt64(bytes.count), mtime: .now())
        }
        var fids: [FID] = []
        for i in 0..<40 {
            let fid = try store.create(CreateRequest(directory: .root, name: "f\(i)", type: .regular, mode: 0o644, uid: 0, gid: 0),
                                       client: "w").value.target!.fid
            try put(fid, content(i, 0))
            fids.append(fid)
        }
        let files = fids
        // Stores replace the version files a backup has linked, as a busy volume's do: each
        // old version is removed after its replacement commits, while the archive is packed.
        let stop = NIOLockedValueBox(false)
        let storing = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            var round = 1
            while !stop.withLockedValue({ $0 }) {
                for (i, fid) in files.enumerated() { try? put(fid, content(i, round)) }
                round += 1
            }
            storing.signal()
        }
        defer {
            stop.withLockedValue { $0 = true }
            storing.wait()
        }
        for attempt in 0..<10 {
            let backup = try store.backup()
            let archive = directory.path + "/backup-\(attempt).tar"
            _ = FileManager.default.createFile(atPath: archive, contents: try backup.handle.readToEnd())
            let restored = try VolumeRestore.restore(archive: archive, into: directory.path + "/restored-\(attempt)")
            #expect(restored.files == 40)
        }
    }

    @Test("a backup's staging directory and archive left by a killed server are removed at the next start")
    func leftoversRemoved() throws {
        let directory = try TemporaryDirectory(prefix: "peach-backup")
        defer { directory.remove() }
        let root = directory.path + "/server"
        try VolumeStore(root: root).releaseRoot()
        let staging = root + "/" + VolumeStore.backupStagingPrefix + "X"
        try FileManager.default.createDirectory(atPath: staging + "/data", withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: staging + ".tar", contents: Data(count: 100))
        let store = try VolumeStore(root: root)
        defer { store.releaseRoot() }
        #expect(!FileManager.default.fileExists(atPath: staging))
        #expect(!FileManager.default.fileExists(atPath: staging + ".tar"))
        #expect(FileManager.default.fileExists(atPath: root + "/volume.sqlite"))
    }
}
