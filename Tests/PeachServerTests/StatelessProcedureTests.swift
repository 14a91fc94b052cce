import Foundation
import NIOConcurrencyHelpers
import PeachProtocol
import PeachSupport
import PeachTesting
import Testing
@testable import PeachServer

/// The NFS-style procedures on a real SQLite file: no callbacks granted, data at an offset,
/// and a WRITE breaks the callbacks of AFS-side clients.
@Suite("Stateless procedures")
struct StatelessProcedureTests {
    func withStore<T>(_ body: (VolumeStore) throws -> T) throws -> T {
        let directory = try TemporaryDirectory(prefix: "peach-nfs")
        defer { directory.remove() }
        let store = try VolumeStore(root: directory.path + "/server")
        for client in ["afs", "nfs"] { _ = try store.introduce(client: client, epoch: 1) }
        return try body(store)
    }

    func newFile(_ store: VolumeStore, _ name: String = "f") throws -> FID {
        let request = CreateRequest(directory: .root, name: name, type: .regular, mode: 0o644, uid: 0, gid: 0)
        return try store.create(request, client: .client("nfs", design: .nfs)).value.target!.fid
    }

    @Test("stateless requests grant no callbacks")
    func noCallBacks() throws {
        try withStore { store in
            let fid = try newFile(store)
            _ = try store.fetchStatus(fid, client: .client("nfs", design: .nfs))
            _ = try store.write(fid, offset: 0, data: [1, 2, 3], client: .client("nfs", design: .nfs))
            _ = try store.read(fid, offset: 0, count: 10)
            _ = try store.lookup(directory: .root, name: "f")
            #expect(try store.callBackCount() == 0)
            _ = try store.fetchStatus(fid, client: "afs")
            #expect(try store.callBackCount() == 1)
        }
    }

    @Test("WRITE at an offset extends, overwrites and bumps the data version; READ returns ranges")
    func readWrite() throws {
        try withStore { store in
            let fid = try newFile(store)
            let first = try store.write(fid, offset: 5, data: Array("world".utf8), client: .client("nfs", design: .nfs)).value
            #expect(first.after.size == 10)
            let second = try store.write(fid, offset: 0, data: Array("hello".utf8), client: .client("nfs", design: .nfs)).value
            #expect(second.before == first.after.dataVersion)
            #expect(second.after.dataVersion == first.after.dataVersion + 1)
            #expect(try store.read(fid, offset: 0, count: 100).1 == Array("helloworld".utf8))
            #expect(try store.read(fid, offset: 3, count: 4).1 == Array("lowo".utf8))
            #expect(try store.read(fid, offset: 10, count: 4).1 == [])
            #expect(throws: StatusCode.invalidArgument) { _ = try store.read(fid, offset: 0, count: UInt32(Frame.dataChunkSize + 1)) }
            _ = try store.commit(fid)
        }
    }

    @Test("a WRITE breaks the callbacks AFS-side clients hold")
    func writeBreaksCallBacks() throws {
        try withStore { store in
            let fid = try newFile(store)
            _ = try store.fetchData(fid, client: "afs")
            let mutation = try store.write(fid, offset: 0, data: [7], client: .client("nfs", design: .nfs))
            #expect(mutation.breaks["afs"] == [fid])
        }
    }

    @Test("READDIR pages through a sorted listing")
    func readDirectory() throws {
        try withStore { store in
            for i in 0..<5 { _ = try newFile(store, "n\(i)") }
            let (_, page1, end1) = try store.readDirectory(.root, cookie: 0, count: 3)
            let (_, page2, end2) = try store.readDirectory(.root, cookie: 3, count: 3)
            #expect(page1.map(\.name) == ["n0", "n1", "n2"])
            #expect(!end1)
            #expect(page2.map(\.name) == ["n3", "n4"])
            #expect(end2)
        }
    }

    @Test("LOOKUP and READLINK")
    func lookupAndReadlink() throws {
        try withStore { store in
            let request = CreateRequest(directory: .root, name: "l", type: .symlink, mode: 0o777, uid: 0, gid: 0, symlinkTarget: "target")
            let link = try store.create(request, client: .client("nfs", design: .nfs)).value.target!
            #expect(try store.lookup(directory: .root, name: "l").object.fid == link.fid)
            #expect(try store.readlink(link.fid).1 == "target")
            #expect(throws: StatusCode.notFound) { _ = try store.lookup(directory: .root, name: "nope") }
        }
    }

    @Test("a WRITE's disk I/O holds up no other change: while one waits to write its version file, a chmod completes")
    func writeOutsideTheWriter() throws {
        try withStore { store in
            let nfs = Requester.client("nfs", design: .nfs)
            let fid = try newFile(store, "big")
            // Past the inline limit: the file has a version file.
            _ = try store.write(fid, offset: UInt64(store.inlineMaximum), data: [1], client: nfs)
            let other = try newFile(store, "other")
            let (status, _) = try store.fetchStatus(fid, client: nfs)
            let path = store.dataPath(vnode: Int64(fid.vnode), version: status.dataVersion)
            // The version file becomes a FIFO: the next WRITE's open waits for a reader, as a
            // WRITE waits for a stalled disk.
            #expect(unlink(path) == 0 && mkfifo(path, 0o644) == 0)
            let writeDone = NIOLockedValueBox(false)
            Thread {
                _ = try? store.write(fid, offset: 0, data: [2], client: nfs)
                writeDone.withLockedValue { $0 = true }
            }.start()
            // The WRITE's thread waits in the FIFO's open (no other thread here opens one).
            #expect(eventually {
                let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
                return tasks.contains { (try? String(contentsOfFile: "/proc/self/task/\($0)/wchan", encoding: .utf8)) == "wait_for_partner" }
            })
            let changed = NIOLockedValueBox(false)
            Thread {
                _ = try? store.setAttributes(other, SetAttributes(mode: 0o600), client: nfs)
                changed.withLockedValue { $0 = true }
            }.start()
            #expect(eventually(within: 10) { changed.withLockedValue { $0 } }, "the chmod waited for the stuck WRITE")
            // Let the WRITE go (it fails: a FIFO has no offsets), and the chmod if it waited.
            let reader = open(path, O_RDONLY | O_NONBLOCK)
            #expect(eventually { writeDone.withLockedValue { $0 } && changed.withLockedValue { $0 } })
            close(reader)
        }
    }

    @Test("WRITEs from four writers to one file, beside stores and backups of the volume: every WRITE lands, none fails")
    func concurrentWritesInPlace() throws {
        try withStore { store in
            let nfs = Requester.client("nfs", design: .nfs)
            let fid = try newFile(store, "shared")
            let other = try newFile(store, "other")
            let block = 4096, blocksPerWriter = 48, writers = 4
            // Past the inline limit from the start: every WRITE goes to the version file.
            _ = try store.write(fid, offset: UInt64(writers * blocksPerWriter * block - 1), data: [0], client: nfs)
            let failures = NIOLockedValueBox<[String]>([])
            let group = DispatchGroup()
            for writer in 0..<writers {
                group.enter()
                Thread {
                    defer { group.leave() }
                    for n in 0..<blocksPerWriter {
                        let offset = UInt64((n * writers + writer) * block)
                        do {
                            _ = try store.write(fid, offset: offset, data: [UInt8](repeating: UInt8(writer + 1), count: block), client: nfs)
                        } catch { failures.withLockedValue { $0.append("write \(writer)/\(n): \(error)") } }
                    }
                }.start()
            }
            group.enter()
            Thread {
                defer { group.leave() }
                for n in 0..<8 {
                    do {
                        let upload = store.newUploadPath()
                        _ = FileManager.default.createFile(atPath: upload, contents: Data(repeating: UInt8(n), count: 100_000))
                        _ = try store.store(other, client: "afs", uploadPath: upload, size: 100_000, mtime: .now())
                        let backup = try store.backup()
                        try backup.handle.close()
                    } catch { failures.withLockedValue { $0.append("store or backup \(n): \(error)") } }
                }
            }.start()
            group.wait()
            #expect(failures.withLockedValue { $0 }.isEmpty, "\(failures.withLockedValue { $0 })")
            var content: [UInt8] = []
            while content.count < writers * blocksPerWriter * block {
                content += try store.read(fid, offset: UInt64(content.count), count: UInt32(Frame.dataChunkSize)).1
            }
            let expected = (0..<(writers * blocksPerWriter)).flatMap { [UInt8](repeating: UInt8($0 % writers + 1), count: block) }
            #expect(content == expected)
        }
    }
}
