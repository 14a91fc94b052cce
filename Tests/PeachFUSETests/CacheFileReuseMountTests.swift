import Foundation
import PeachLocalCluster
import PeachSupport
import PeachTesting
import Testing

/// The AFS-mode cache reuses the files of copies that went (issue 19), as OpenAFS reuses its
/// V-files. (That it never reuses one a descriptor still reads is `SpareCacheFilesTests`': through
/// a mount, the kernel's page cache would answer such a read before the cache manager.)
@Suite("Real FUSE mounts: cache files reused", .serialized,
       .enabled(if: MountSupport.unavailableReason == nil, "\(MountSupport.unavailableReason ?? "")"))
struct CacheFileReuseMountTests {
    /// Inode numbers of the files in `directory`, by name.
    static func inodes(in directory: String) -> [String: UInt64] {
        var result: [String: UInt64] = [:]
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] {
            var st = stat()
            if stat(directory + "/" + name, &st) == 0 { result[name] = UInt64(st.st_ino) }
        }
        return result
    }

    @Test("a removed file's cache file holds the next new file's copy: no file is made or unlinked")
    func removedCopyIsReused() throws {
        try withMounts { cluster in
            let mount = try cluster.mount("m", design: .afs)
            try Data("first".utf8).write(to: URL(fileURLWithPath: mount.path + "/a"))
            let copies = Self.inodes(in: mount.cache + "/files")
            #expect(copies.count == 1, "one cached copy: \(copies)")
            try FileManager.default.removeItem(atPath: mount.path + "/a")
            let spares = Self.inodes(in: mount.cache + "/spares")
            #expect(Array(spares.values) == Array(copies.values), "the copy's file is a spare now: \(spares)")

            try Data("second".utf8).write(to: URL(fileURLWithPath: mount.path + "/b"))
            #expect(Array(Self.inodes(in: mount.cache + "/files").values) == Array(copies.values), "the new copy is that file")
            #expect(Self.inodes(in: mount.cache + "/spares").isEmpty)
            #expect(try String(contentsOfFile: mount.path + "/b", encoding: .utf8) == "second")
        }
    }
}
