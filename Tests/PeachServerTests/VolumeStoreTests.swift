import Foundation
import PeachProtocol
import PeachSupport
import PeachTesting
import Testing
@testable import PeachServer

/// The volume store on a real SQLite file in a temporary directory.
@Suite("Volume store")
struct VolumeStoreTests {
    static let clients = ["a", "b", "c", "x", "reader", "reader1", "reader2", "writer"]

    /// A store whose clients said Hello (callbacks belong to known clients: a foreign key).
    func openStore(_ root: String) throws -> VolumeStore {
        let store = try VolumeStore(root: root)
        for client in Self.clients { _ = try store.introduce(client: client, epoch: 1) }
        return store
    }

    func withStore<T>(_ body: (VolumeStore, String) throws -> T) throws -> T {
        let directory = try TemporaryDirectory(prefix: "peach-store")
        defer { directory.remove() }
        return try body(try openStore(directory.path + "/server"), directory.path + "/server")
    }

    func create(_ store: VolumeStore, _ name: String, in directory: FID = .root, type: FileType = .regular,
                client: Requester = "a") throws -> FileStatus {
        let request = CreateRequest(directory: directory, name: name, type: type, mode: 0o644, uid: 1000, gid: 1000)
        return try store.create(request, client: client).value.target!
    }

    func upload(_ store: VolumeStore, _ bytes: [UInt8]) -> String {
        let path = store.newUploadPath()
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        return path
    }

    func content(_ store: VolumeStore, _ fid: FID, range: ByteRange = .whole) throws -> [UInt8] {
        try fetchedContent(store, fid, range: range)
    }

    @Test("FetchData sends the part of a file asked for, as AFS-3's position and length", arguments: [
        (ByteRange.whole, 0..<5000), (ByteRange(offset: 1000, length: 2000), 1000..<3000),
        (ByteRange(offset: 4000, length: 5000), 4000..<5000), (ByteRange(offset: 7000, length: 10), 5000..<5000),
    ])
    func fetchRange(range: ByteRange, expected: Range<Int>) throws {
        try withStore { store, _ in
            let bytes = (0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 13) }
            let file = try create(store, "f", client: "writer")
            _ = try store.store(file.fid, client: "writer", uploadPath: upload(store, bytes), size: 5000, mtime: Timespec.now())
            #expect(try content(store, file.fid, range: range) == Array(bytes[expected]))
            // A listing is cut the same way.
            let listing = try content(store, .root)
            #expect(try content(store, .root, range: ByteRange(offset: 2, length: 3)) == Array(listing[2..<5]))
        }
    }

    @Test("a new volume has a root directory owned by root")
    func root() throws {
        try withStore { store, _ in
            let (status, _) = try store.fetchStatus(.root, client: "a")
            #expect(status.type == .directory)
            #expect(status.linkCount == 2)
            #expect(status.fid == .root)
        }
    }

    @Test("create, store, fetch: content and data version")
    func storeAndFetch() throws {
        try withStore { store, _ in
            let file = try create(store, "f")
            #expect(file.uid == 1000)
            #expect(try content(store, file.fid) == [])
            let stored = try store.store(file.fid, client: "a", uploadPath: upload(store, Array("hello".utf8)), size: 5,
                                         mtime: Timespec(seconds: 100, nanoseconds: 5)).value
            #expect(stored.size == 5)
            #expect(stored.dataVersion == file.dataVersion + 1)
            #expect(stored.mtime == Timespec(seconds: 100, nanoseconds: 5))
            #expect(try content(store, file.fid) == Array("hello".utf8))
        }
    }

    @Test("namespace errors are those of a local file system")
    func errors() throws {
        try withStore { store, _ in
            let dir = try create(store, "d", type: .directory)
            _ = try create(store, "x", in: dir.fid)
            #expect(throws: StatusCode.exists) { _ = try create(store, "d") }
            #expect(throws: StatusCode.nameTooLong) { _ = try create(store, String(repeating: "n", count: 256)) }
            #expect(throws: StatusCode.notEmpty) { _ = try store.remove(directory: .root, name: "d", isDirectory: true, client: "a") }
            #expect(throws: StatusCode.isDirectory) { _ = try store.remove(directory: .root, name: "d", isDirectory: false, client: "a") }
            #expect(throws: StatusCode.notFound) { _ = try store.remove(directory: .root, name: "nope", isDirectory: false, client: "a") }
            #expect(throws: StatusCode.notDirectory) { _ = try store.remove(directory: dir.fid, name: "x", isDirectory: true, client: "a") }
            #expect(throws: StatusCode.invalidArgument) {
                _ = try store.rename(from: .root, "d", to: dir.fid, "inside", client: "a")
            }
        }
    }

    @Test("link counts follow links, subdirectories and removals")
    func linkCounts() throws {
        try withStore { store, _ in
            let file = try create(store, "f")
            _ = try store.link(directory: .root, name: "g", target: file.fid, client: "a")
            #expect(try store.fetchStatus(file.fid, client: "a").0.linkCount == 2)
            _ = try create(store, "sub", type: .directory)
            #expect(try store.fetchStatus(.root, client: "a").0.linkCount == 3)
            let removed = try store.remove(directory: .root, name: "f", isDirectory: false, client: "a").value
            #expect(removed.target?.linkCount == 1)
            let gone = try store.remove(directory: .root, name: "g", isDirectory: false, client: "a").value
            #expect(gone.target?.linkCount == 0, "the last name went: reported with a link count of 0")
            #expect(throws: StatusCode.stale) { _ = try store.fetchStatus(file.fid, client: "a") }
            _ = try store.remove(directory: .root, name: "sub", isDirectory: true, client: "a")
            #expect(try store.fetchStatus(.root, client: "a").0.linkCount == 2)
        }
    }

    @Test("rename over an existing file replaces it; across directories moves the link count")
    func renames() throws {
        try withStore { store, _ in
            let a = try create(store, "a")
            let b = try create(store, "b")
            let d1 = try create(store, "d1", type: .directory)
            let d2 = try create(store, "d2", type: .directory)
            _ = try store.rename(from: .root, "a", to: .root, "b", client: "x")
            #expect(throws: StatusCode.stale) { _ = try store.fetchStatus(b.fid, client: "x") }
            _ = try store.rename(from: .root, "b", to: d1.fid, "a", client: "x")
            #expect(try store.fetchStatus(a.fid, client: "x").0.type == .regular)
            let sub = try create(store, "sub", in: d1.fid, type: .directory)
            _ = try store.rename(from: d1.fid, "sub", to: d2.fid, "sub", client: "x")
            #expect(try store.fetchStatus(d1.fid, client: "x").0.linkCount == 2)
            #expect(try store.fetchStatus(d2.fid, client: "x").0.linkCount == 3)
            #expect(try store.fetchStatus(sub.fid, client: "x").0.type == .directory)
            #expect(throws: StatusCode.isDirectory) { _ = try store.rename(from: d1.fid, "a", to: .root, "d2", client: "x") }
        }
    }

    @Test("a mutation breaks other clients' callbacks, not the mutator's, in the same transaction")
    func breaks() throws {
        try withStore { store, _ in
            let file = try create(store, "f", client: "writer")
            _ = try store.fetchStatus(file.fid, client: "reader1")
            _ = try store.fetchData(file.fid, client: "reader2")
            let mutation = try store.store(file.fid, client: "writer", uploadPath: upload(store, [1]), size: 1, mtime: .now())
            #expect(mutation.breaks.keys.sorted() == ["reader1", "reader2"])
            #expect(mutation.breaks["reader1"] == [file.fid])
            #expect(mutation.reason == .store)
            // Broken promises are gone once acknowledged (until then a holder may still trust
            // its copy, and the next change waits for it again): a second store breaks nothing.
            #expect(try store.store(file.fid, client: "writer", uploadPath: upload(store, [3]), size: 1, mtime: .now()).breaks
                    == mutation.breaks)
            for (client, fids) in mutation.breaks { try store.settleBreaks(client: client, fids: fids) }
            let second = try store.store(file.fid, client: "writer", uploadPath: upload(store, [2]), size: 1, mtime: .now())
            #expect(second.breaks.isEmpty)
            // Creating in a directory breaks the directory's callbacks.
            _ = try store.fetchData(.root, client: "reader1")
            let created = try store.create(CreateRequest(directory: .root, name: "g", type: .regular, mode: 0, uid: 0, gid: 0),
                                           client: "writer")
            #expect(created.breaks["reader1"] == [.root])
        }
    }

    @Test("removing a file, or renaming over it, leaves no promise on it, the remover's included")
    func removedFilesHoldNoPromises() throws {
        try withStore { store, _ in
            let file = try create(store, "f", client: "writer")
            let other = try create(store, "g", client: "writer")
            let target = try create(store, "h", client: "writer")
            for fid in [file.fid, other.fid, target.fid] { _ = try store.fetchStatus(fid, client: "reader") }
            let removal = try store.remove(directory: .root, name: "f", isDirectory: false, client: "writer")
            let rename = try store.rename(from: .root, "g", to: .root, "h", client: "writer")
            // What the reader acknowledges once the breaks reach it.
            for fids in [removal.breaks["reader"], rename.breaks["reader"]] { try store.settleBreaks(client: "reader", fids: fids ?? []) }
            // The reader's promises were broken; the writer keeps the root and g (now named h),
            // and nothing on f or the old h, which are gone.
            #expect(try store.callBackCount(client: "reader") == 0)
            #expect(try store.callBackCount(client: "writer") == 2)
            #expect(try store.callBackCount() == store.callBackHolders().values.reduce(0) { $0 + $1.count })
        }
    }

    @Test("callbacks, data and the epoch survive a restart; orphans are removed")
    func restart() throws {
        let directory = try TemporaryDirectory(prefix: "peach-store")
        defer { directory.remove() }
        let root = directory.path + "/server"
        let fid: FID
        do {
            let store = try openStore(root)
            #expect(store.epoch == 1)
            fid = try create(store, "f").fid
            _ = try store.store(fid, client: "a", uploadPath: upload(store, [9, 9]), size: 2, mtime: .now())
            _ = try store.fetchStatus(fid, client: "b")
        }
        _ = FileManager.default.createFile(atPath: root + "/data/\(fid.vnode).77", contents: Data([1]))
        _ = FileManager.default.createFile(atPath: root + "/uploads/leftover", contents: Data([1]))
        let reopened = try openStore(root)
        #expect(reopened.epoch == 2)
        #expect(try content(reopened, fid) == [9, 9])
        #expect(!FileManager.default.fileExists(atPath: root + "/data/\(fid.vnode).77"))
        #expect(!FileManager.default.fileExists(atPath: root + "/uploads/leftover"))
        let mutation = try reopened.setAttributes(fid, SetAttributes(mode: 0o600), client: "a")
        #expect(mutation.breaks["b"] == [fid])
    }

    @Test("setattr truncates into a new data version and sets times with nanoseconds")
    func setAttributes() throws {
        try withStore { store, _ in
            let file = try create(store, "f")
            _ = try store.store(file.fid, client: "a", uploadPath: upload(store, Array("abcdef".utf8)), size: 6, mtime: .now())
            let mtime = Timespec(seconds: 1_234_567_890, nanoseconds: 123_456_789)
            let status = try store.setAttributes(file.fid, SetAttributes(mode: 0o600, uid: 7, size: 3, mtime: .at(mtime)), client: "a").value
            #expect(status.size == 3)
            #expect(status.mode == 0o600)
            #expect(status.uid == 7)
            #expect(status.mtime == mtime)
            #expect(try content(store, file.fid) == Array("abc".utf8))
        }
    }

    @Test("a client declared unreachable loses its callbacks and is told at its next Hello")
    func unreachable() throws {
        try withStore { store, _ in
            _ = try store.fetchStatus(.root, client: "c")
            #expect(try store.callBackCount() == 1)
            try store.declareUnreachable(client: "c")
            #expect(try store.callBackCount() == 0)
            #expect(try store.introduce(client: "c", epoch: 1) == true)
        }
    }
}

/// What FetchData sends of `fid` for the client "reader", in either form (bytes from the
/// database or a version file).
func fetchedContent(_ store: VolumeStore, _ fid: FID, range: ByteRange = .whole) throws -> [UInt8] {
    switch try store.fetchData(fid, range: range, client: "reader").2 {
    case .bytes(let bytes): return bytes
    case .file(let handle, let length):
        defer { try? handle.close() }
        return Array(try handle.read(upToCount: Int(length)) ?? Data())
    }
}
