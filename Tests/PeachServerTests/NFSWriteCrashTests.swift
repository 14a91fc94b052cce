import Foundation
import PeachLocalCluster
import PeachProtocol
import PeachSupport
import PeachTesting
import Testing

/// A `peach server` process killed with SIGKILL while NFS WRITEs stream into a file: after every
/// restart the file is still there, whole, at its size, with or without the last writes.
@Suite("NFS WRITE across server crashes", .serialized,
       .enabled(if: FileManager.default.isExecutableFile(atPath: MountSupport.peachBinary), "peach is not built"))
struct NFSWriteCrashTests {
    static let fileSize = 4 << 20
    static let block = 4096

    /// WRITEs of 4 KiB at rotating offsets, each after the last one's reply, until the server goes.
    func writeUntilTheServerDies(port: Int, fid: FID, seed: Int) {
        guard let writer = try? RawProtocolClient(port: port), (try? writer.hello(design: .nfs)) != nil else { return }
        var n = seed
        while true {
            let offset = UInt64((n * Self.block) % Self.fileSize)
            let bytes = [UInt8](repeating: UInt8(truncatingIfNeeded: n), count: Self.block)
            guard let id = try? writer.send(.write(fid, offset: offset, data: bytes)),
                  case .success? = try? writer.reply(to: id, timeout: 5) else { return }
            n += 1
        }
    }

    @Test("kill -9 during WRITEs never loses the file (it once did: the version file was renamed before its commit)")
    func killDuringWrites() throws {
        let directory = try TemporaryDirectory(prefix: "peach-nfs-crash")
        defer { directory.remove() }
        let server = try ServerProcess(root: directory.path + "/root", logDirectory: directory.path)
        defer { server.stop() }
        let setup = try RawProtocolClient(port: server.address.port)
        try setup.hello(design: .nfs)
        let create = try setup.send(.createFile(CreateRequest(directory: .root, name: "big", type: .regular, mode: 0o644, uid: 0, gid: 0)))
        guard case .success(.namespace(let made, _))? = try setup.reply(to: create), let fid = made.target?.fid else {
            Issue.record("CREATE failed"); return
        }
        let sizing = try setup.send(.write(fid, offset: UInt64(Self.fileSize - 1), data: [0]))
        guard case .success? = try setup.reply(to: sizing) else { Issue.record("WRITE failed"); return }

        for cycle in 0..<20 {
            let done = DispatchSemaphore(value: 0)
            let port = server.address.port
            Thread.detachNewThread {
                writeUntilTheServerDies(port: port, fid: fid, seed: cycle * 1000)
                done.signal()
            }
            usleep(UInt32.random(in: 100_000...300_000))
            server.kill()
            #expect(done.wait(timeout: .now() + 20) == .success)
            try server.start()

            let reader = try RawProtocolClient(port: server.address.port)
            try reader.hello(design: .nfs)
            let attributes = try reader.send(.fetchStatus(fid))
            guard case .success(.status(let status, _))? = try reader.reply(to: attributes) else {
                Issue.record("cycle \(cycle): GETATTR failed"); return
            }
            #expect(status.size == UInt64(Self.fileSize))
            let read = try reader.send(.read(fid, offset: UInt64(Self.fileSize - Self.block), count: UInt32(Self.block)))
            guard case .success(.read(_, let data))? = try reader.reply(to: read) else {
                Issue.record("cycle \(cycle): READ failed after the restart: the version file is gone"); return
            }
            #expect(data.count == Self.block)
            // One version file, the one the committed row names.
            let files = try FileManager.default.contentsOfDirectory(atPath: server.root + "/data")
            #expect(files == ["\(fid.vnode).\(status.dataVersion)"], "cycle \(cycle)")
        }
    }
}
