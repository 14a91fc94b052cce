import Foundation
import PeachProtocol
import PeachSupport
import PeachTesting
import Testing
@testable import PeachServer

/// Values from the wire that once trapped the server or filled its disk, on a real volume:
/// each gets a status code, and nothing is left behind.
@Suite("Wire values")
struct WireValueTests {
    func withStore<T>(limits: VolumeLimits = VolumeLimits(), _ body: (VolumeStore, String) throws -> T) throws -> T {
        let directory = try TemporaryDirectory(prefix: "peach-wire")
        defer { directory.remove() }
        let store = try VolumeStore(root: directory.path + "/server", limits: limits)
        defer { store.releaseRoot() }
        _ = try store.introduce(client: "a", epoch: 1)
        return try body(store, directory.path + "/server")
    }

    func newFile(_ store: VolumeStore, _ name: String = "f") throws -> FID {
        let request = CreateRequest(directory: .root, name: name, type: .regular, mode: 0o644, uid: 0, gid: 0)
        return try store.create(request, client: "a").value.target!.fid
    }

    func upload(_ store: VolumeStore, _ bytes: [UInt8]) -> String {
        let path = store.newUploadPath()
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        return path
    }

    func leftovers(_ root: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: root + "/uploads")
    }

    @Test("WRITE at an offset of 2^63 or more, or whose end overflows, gets EFBIG")
    func hugeWriteOffsets() throws {
        try withStore { store, _ in
            let fid = try newFile(store)
            for offset: UInt64 in [1 << 63, UInt64.max, UInt64.max - 1, (1 << 40)] {
                #expect(throws: StatusCode.fileTooLarge) { _ = try store.write(fid, offset: offset, data: [1, 2], client: .stateless("a")) }
            }
            // Up to the limit is fine.
            _ = try store.write(fid, offset: (1 << 40) - 1, data: [9], client: .stateless("a"))
            #expect(try store.read(fid, offset: (1 << 40) - 1, count: 4).1 == [9])
        }
    }

    @Test("SETATTR and StoreData sizes of 2^63 or past --max-file-size get EFBIG")
    func hugeSizes() throws {
        try withStore(limits: VolumeLimits(maximumFileSize: 1 << 20)) { store, root in
            let fid = try newFile(store)
            for size: UInt64 in [1 << 63, UInt64.max, (1 << 20) + 1] {
                #expect(throws: StatusCode.fileTooLarge) { _ = try store.setAttributes(fid, SetAttributes(size: size), client: "a") }
                #expect(throws: StatusCode.fileTooLarge) {
                    _ = try store.store(fid, client: "a", uploadPath: upload(store, [1]), size: size, mtime: .now())
                }
            }
            #expect(try leftovers(root).isEmpty)
            #expect(try store.setAttributes(fid, SetAttributes(size: 1 << 20), client: "a").value.size == 1 << 20)
        }
    }

    @Test("a device number wider than Linux's 32-bit dev_t gets EINVAL; an empty symlink target too")
    func deviceNumbers() throws {
        try withStore { store, _ in
            for rdev: UInt64 in [1 << 63, UInt64.max, 1 << 32] {
                let request = CreateRequest(directory: .root, name: "dev", type: .characterDevice, mode: 0o600, uid: 0, gid: 0, rdev: rdev)
                #expect(throws: StatusCode.invalidArgument) { _ = try store.create(request, client: "a") }
            }
            let device = CreateRequest(directory: .root, name: "dev", type: .characterDevice, mode: 0o600, uid: 0, gid: 0,
                                       rdev: UInt64(UInt32.max))
            let created = try store.create(device, client: "a").value.target
            #expect(created?.rdev == UInt64(UInt32.max))
            let emptyLink = CreateRequest(directory: .root, name: "l", type: .symlink, mode: 0o777, uid: 0, gid: 0)
            #expect(throws: StatusCode.invalidArgument) { _ = try store.create(emptyLink, client: "a") }
        }
    }

    @Test("extending or truncating a sparse file copies its data ranges only")
    func sparseResize() throws {
        try withStore { store, root in
            let fid = try newFile(store)
            let farOffset: UInt64 = 100 << 20
            _ = try store.write(fid, offset: 4096, data: Array("near".utf8), client: .stateless("a"))
            _ = try store.write(fid, offset: farOffset, data: Array("far".utf8), client: .stateless("a"))
            let extended = try store.setAttributes(fid, SetAttributes(size: farOffset + 1000), client: "a").value
            var info = stat()
            #expect(stat(store.dataPath(vnode: Int64(fid.vnode), version: extended.dataVersion), &info) == 0)
            #expect(info.st_size == off_t(farOffset + 1000))
            #expect(Int(info.st_blocks) * 512 < 1 << 20, "the 100 MiB hole was copied as data")
            #expect(try store.read(fid, offset: 4096, count: 4).1 == Array("near".utf8))
            #expect(try store.read(fid, offset: farOffset, count: 3).1 == Array("far".utf8))
            // Truncating inside the data keeps what is below the new end.
            _ = try store.setAttributes(fid, SetAttributes(size: 4098), client: "a")
            #expect(try store.read(fid, offset: 4096, count: 10).1 == Array("ne".utf8))
            #expect(try leftovers(root).isEmpty)
        }
    }

    @Test("--quota: a store, WRITE, extend or symlink target past it gets EDQUOT, keeps the old version and leaves nothing behind")
    func quota() throws {
        try withStore(limits: VolumeLimits(quota: 10_000)) { store, root in
            let fid = try newFile(store)
            let first = try store.store(fid, client: "a", uploadPath: upload(store, [UInt8](repeating: 1, count: 6000)),
                                        size: 6000, mtime: .now()).value
            #expect(try store.volumeBytes() == 6000)
            let other = try newFile(store, "g")
            #expect(throws: StatusCode.quotaExceeded) {
                _ = try store.store(other, client: "a", uploadPath: upload(store, [UInt8](repeating: 2, count: 5000)),
                                    size: 5000, mtime: .now())
            }
            #expect(throws: StatusCode.quotaExceeded) { _ = try store.write(other, offset: 4000, data: [1], client: .stateless("a")) }
            #expect(throws: StatusCode.quotaExceeded) { _ = try store.setAttributes(other, SetAttributes(size: 4001), client: "a") }
            // A symlink's target counts too.
            let longTarget = String(repeating: "t", count: 4095)
            #expect(throws: StatusCode.quotaExceeded) {
                _ = try store.create(CreateRequest(directory: .root, name: "link", type: .symlink, mode: 0o777, uid: 0, gid: 0,
                                                   symlinkTarget: longTarget), client: "a")
            }
            _ = try store.create(CreateRequest(directory: .root, name: "short", type: .symlink, mode: 0o777, uid: 0, gid: 0,
                                               symlinkTarget: "tt"), client: "a")
            #expect(try store.volumeBytes() == 6002)
            _ = try store.remove(directory: .root, name: "short", isDirectory: false, client: "a")
            // Replacing a file counts its old size out; shrinking is always allowed.
            _ = try store.store(fid, client: "a", uploadPath: upload(store, [UInt8](repeating: 3, count: 9000)), size: 9000, mtime: .now())
            #expect(try store.volumeBytes() == 9000)
            _ = try store.setAttributes(fid, SetAttributes(size: 10), client: "a")
            #expect(try store.volumeBytes() == 10)
            _ = try store.remove(directory: .root, name: "f", isDirectory: false, client: "a")
            #expect(try store.volumeBytes() == 0)
            #expect(try store.fetchStatus(other, client: "a").0.size == 0)
            #expect(first.size == 6000)
            #expect(try leftovers(root).isEmpty)
            let volume = try store.volumeStatus()
            #expect(UInt64(volume.blockSize) * volume.totalBlocks <= 10_000)
        }
    }
}
