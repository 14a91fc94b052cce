import Foundation
import PeachProtocol
import PeachSupport
import Testing
@testable import PeachClient

/// The disk cache's spare files, on a real cache directory: reused for new copies, and never
/// while a descriptor still reads the copy.
@Suite("Disk cache: spare files")
struct SpareCacheFilesTests {
    static let fid = FID(vnode: 9, unique: 3)

    /// A clean copy of `fid` at `version` holding `content`, installed.
    func install(_ cache: DiskCache, version: UInt64, _ content: String) throws {
        let file = try cache.create(cache.path(Self.fid, version), flags: O_WRONLY)
        #expect(write(file.fd, content, content.utf8.count) == content.utf8.count)
        cache.close(file)
        try cache.install(.init(fid: Self.fid, dataVersion: version, size: UInt64(content.utf8.count), dirty: false, lastUse: 0))
    }

    /// A disk cache in a temporary directory holding "version one" of `fid`.
    func withCache(_ body: (String, DiskCache) throws -> Void) throws {
        let directory = try TemporaryDirectory(prefix: "peach-spares")
        defer { directory.remove() }
        let cache = try DiskCache(directory: directory.path, sizeLimit: 1 << 20)
        try install(cache, version: 1, "version one")
        try body(directory.path, cache)
    }

    @Test("a replaced version nothing holds open becomes an empty spare, and the next new file is it")
    func replacedCopyIsReused() throws {
        try withCache { directory, cache in
            let first = try cache.open(Self.fid, 1, flags: O_RDONLY)
            let firstInode = first.inode
            cache.close(first)

            try install(cache, version: 2, "version two")
            #expect(cache.spares.count == 1)
            let spare = try FileManager.default.contentsOfDirectory(atPath: directory + "/spares")
            #expect(try FileManager.default.attributesOfItem(atPath: directory + "/spares/" + spare[0])[.size] as? Int == 0,
                    "a spare holds no data: it costs no cache space")

            let next = try cache.create(directory + "/files/next", flags: O_RDWR)
            defer { cache.close(next) }
            #expect(next.inode == firstInode)
            #expect(cache.spares.count == 0)
        }
    }

    @Test("a version a descriptor holds open is unlinked, not reused: the descriptor keeps reading it")
    func openCopyIsNeverReused() throws {
        try withCache { directory, cache in
            let held = try cache.open(Self.fid, 1, flags: O_RDONLY)
            defer { cache.close(held) }

            try install(cache, version: 2, "version two")   // retires version one's file
            cache.remove(Self.fid)                          // retires version two's: a spare
            #expect(cache.spares.count == 1, "only the file nothing holds open")
            for i in 0..<3 {
                let file = try cache.create(directory + "/files/new\(i)", flags: O_RDWR)
                #expect(file.inode != held.inode)
                #expect(write(file.fd, "overwritten", 11) == 11)
                cache.close(file)
        }
        var buffer = [UInt8](repeating: 0, count: 64)
        let n = pread(held.fd, &buffer, buffer.count, 0)
        #expect(String(decoding: buffer.prefix(max(n, 0)), as: UTF8.self) == "version one")
        }
    }
}
