import Foundation
import PeachProtocol
import PeachSupport
import PeachTesting
import Testing
@testable import PeachServer

/// Small files' content in the volume's database (issue 19): every path that reads or writes
/// content handles both forms, and a file moves between them as it grows and shrinks.
@Suite("Inline storage of small files")
struct InlineStorageTests {
    static let limit = 64 << 10

    func withStore<T>(_ body: (VolumeStore, String) throws -> T) throws -> T {
        let directory = try TemporaryDirectory(prefix: "peach-inline")
        defer { directory.remove() }
        let root = directory.path + "/server"
        let store = try VolumeStore(root: root, inlineMaximum: Self.limit)
        defer { store.releaseRoot() }
        for client in ["a", "reader"] { _ = try store.introduce(client: client, epoch: 1) }
        return try body(store, root)
    }

    func newFile(_ store: VolumeStore, _ name: String = "f") throws -> FID {
        try store.create(CreateRequest(directory: .root, name: name, type: .regular, mode: 0o644, uid: 0, gid: 0), client: "a").value.target!.fid
    }

    func storeFile(_ store: VolumeStore, _ fid: FID, _ bytes: [UInt8], asFile: Bool = false) throws {
        let content: VolumeStore.UploadedContent
        if asFile {
            let path = store.newUploadPath()
            #expect(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
            content = .file(path)
        } else {
            content = .bytes(bytes)
        }
        _ = try store.store(fid, client: "a", content: content, size: UInt64(bytes.count), mtime: .now())
    }

    func content(_ store: VolumeStore, _ fid: FID, range: ByteRange = .whole) throws -> [UInt8] {
        try fetchedContent(store, fid, range: range)
    }

    /// The version files on the server's disk.
    func versionFiles(_ root: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: root + "/data").sorted()
    }

    static func pattern(_ count: Int, seed: UInt8 = 1) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) }
    }

    @Test("a small store makes no file: FetchData, a range and READ read it from the database")
    func smallStoreIsInline() throws {
        try withStore { store, root in
            let fid = try newFile(store)
            let bytes = Self.pattern(5000)
            try storeFile(store, fid, bytes)
            #expect(try versionFiles(root).isEmpty)
            #expect(try store.inlineUsage() == (1, 5000))
            #expect(try content(store, fid) == bytes)
            #expect(try content(store, fid, range: ByteRange(offset: 1000, length: 100)) == Array(bytes[1000..<1100]))
            #expect(try store.read(fid, offset: 4990, count: 100).1 == Array(bytes[4990...]))
            // A small upload that arrived as a file goes inline too, and its file goes.
            try storeFile(store, fid, Self.pattern(300, seed: 2), asFile: true)
            #expect(try versionFiles(root).isEmpty)
            #expect(try FileManager.default.contentsOfDirectory(atPath: root + "/uploads").isEmpty)
            #expect(try content(store, fid) == Self.pattern(300, seed: 2))
        }
    }

    @Test("a file moves to a version file when it grows past the limit, and back at its next store when it shrinks")
    func movesBetweenForms() throws {
        try withStore { store, root in
            let fid = try newFile(store)
            try storeFile(store, fid, Self.pattern(5000))
            let large = Self.pattern(Self.limit + 1, seed: 3)
            try storeFile(store, fid, large, asFile: true)
            let status = try store.fetchStatus(fid, client: .stateless("reader")).0
            #expect(try versionFiles(root) == ["\(fid.vnode).\(status.dataVersion)"])
            #expect(try store.inlineUsage().files == 0)
            #expect(try content(store, fid) == large)
            try storeFile(store, fid, Self.pattern(10, seed: 4), asFile: true)
            #expect(try versionFiles(root).isEmpty)
            #expect(try content(store, fid) == Self.pattern(10, seed: 4))
            // An empty file has neither.
            try storeFile(store, fid, [])
            #expect(try versionFiles(root).isEmpty && store.inlineUsage().files == 0)
            #expect(try content(store, fid).isEmpty)
        }
    }

    @Test("a truncate moves a file across the limit both ways, keeping its bytes and zero-filling growth")
    func truncateAcrossTheLimit() throws {
        try withStore { store, root in
            let fid = try newFile(store)
            let bytes = Self.pattern(5000)
            try storeFile(store, fid, bytes)
            _ = try store.setAttributes(fid, SetAttributes(size: 100_000), client: "a")
            #expect(try versionFiles(root).count == 1 && store.inlineUsage().files == 0)
            #expect(try content(store, fid) == bytes + [UInt8](repeating: 0, count: 95_000))
            _ = try store.setAttributes(fid, SetAttributes(size: 3000), client: "a")
            #expect(try versionFiles(root).isEmpty)
            #expect(try content(store, fid) == Array(bytes[0..<3000]))
            _ = try store.setAttributes(fid, SetAttributes(size: 4000), client: "a")
            #expect(try content(store, fid) == Array(bytes[0..<3000]) + [UInt8](repeating: 0, count: 1000))
        }
    }

    @Test("an NFS WRITE keeps a small file inline, moves it out past the limit, and COMMIT makes either durable")
    func writesInBothForms() throws {
        try withStore { store, root in
            let fid = try newFile(store)
            var expected = Self.pattern(5000)
            try storeFile(store, fid, expected)
            _ = try store.write(fid, offset: 10, data: Array("abc".utf8), client: .stateless("b"))
            expected.replaceSubrange(10..<13, with: Array("abc".utf8))
            #expect(try versionFiles(root).isEmpty)
            #expect(try content(store, fid) == expected)
            _ = try store.commit(fid)
            // Past the end: a hole, then the data.
            let tail = Self.pattern(10_000, seed: 5)
            _ = try store.write(fid, offset: 60_000, data: tail, client: .stateless("b"))
            expected += [UInt8](repeating: 0, count: 55_000) + tail
            #expect(try versionFiles(root).count == 1 && store.inlineUsage().files == 0)
            #expect(try content(store, fid) == expected)
            #expect(try store.read(fid, offset: 59_990, count: 20).1 == [UInt8](repeating: 0, count: 10) + Array(tail[0..<10]))
            _ = try store.commit(fid)
        }
    }

    @Test("removing a small file removes its content; a hard link keeps it")
    func removeDropsContent() throws {
        try withStore { store, _ in
            let fid = try newFile(store)
            try storeFile(store, fid, Self.pattern(100))
            _ = try store.link(directory: .root, name: "g", target: fid, client: "a")
            _ = try store.remove(directory: .root, name: "f", isDirectory: false, client: "a")
            #expect(try content(store, fid) == Self.pattern(100))
            _ = try store.remove(directory: .root, name: "g", isDirectory: false, client: "a")
            #expect(try store.inlineUsage() == (0, 0))
        }
    }

    @Test("--inline-max 0 keeps every file's content in a version file")
    func inlineOff() throws {
        let directory = try TemporaryDirectory(prefix: "peach-inline")
        defer { directory.remove() }
        let store = try VolumeStore(root: directory.path + "/server", inlineMaximum: 0)
        defer { store.releaseRoot() }
        _ = try store.introduce(client: "a", epoch: 1)
        let fid = try newFile(store)
        try storeFile(store, fid, Self.pattern(10), asFile: true)
        #expect(try versionFiles(directory.path + "/server").count == 1)
        #expect(try store.inlineUsage().files == 0)
    }
}
