import Benchmark
import Foundation
import NIOCore
import PeachClient
import PeachProtocol
import PeachServer
import PeachTesting

/// The hot paths: the codec, whole-file fetch and store over loopback, the AFS open-hit path,
/// and one callback break fanned out to 100 clients.
let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(metrics: [.wallClock, .throughput, .mallocCountTotal],
                                           maxDuration: .seconds(3), maxIterations: 100_000)

    let status = FileStatus(fid: FID(vnode: 42), type: .regular, mode: 0o644, uid: 0, gid: 0, size: 4096, linkCount: 1,
                            dataVersion: 3, atime: .now(), mtime: .now(), ctime: .now())

    Benchmark("Codec: encode and decode a FetchStatus reply") { benchmark in
        for _ in benchmark.scaledIterations {
            var buffer = ByteBuffer()
            ReplyCodec.encode(.status(status, callBackExpiry: 1), into: &buffer)
            blackHole(try ReplyCodec.decode(opcode: Opcode.fetchStatus.rawValue, body: buffer))
        }
    }

    let block = [UInt8](repeating: 7, count: 64 << 10)
    Benchmark("Codec: encode and decode a 64 KiB WRITE request") { benchmark in
        for _ in benchmark.scaledIterations {
            var buffer = ByteBuffer()
            RequestCodec.encode(.write(FID(vnode: 9), offset: 0, data: block), into: &buffer)
            blackHole(try RequestCodec.decode(opcode: Opcode.write.rawValue, body: buffer))
        }
    }

    Benchmark("Loopback: store and fetch a 4 MiB file (AFS mode)",
              configuration: .init(metrics: [.wallClock, .throughput], maxDuration: .seconds(5), maxIterations: 200)) { benchmark in
        let cluster = try TestCluster()
        defer { cluster.shutdown() }
        let writer = PathClient(try cluster.addClient())
        let readerManager = try cluster.addClient()
        let reader = PathClient(readerManager)
        let data = [UInt8](repeating: 1, count: 4 << 20)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            try writer.writeFile("/f", data)
            blackHole(try reader.readFile("/f").count)
        }
        benchmark.stopMeasurement()
    }

    Benchmark("AFS open-hit path: open, read 4 KiB, close a cached file") { benchmark in
        let cluster = try TestCluster()
        defer { cluster.shutdown() }
        let manager = try cluster.addClient()
        let client = PathClient(manager)
        try client.writeFile("/small", [UInt8](repeating: 2, count: 4096))
        let inode = try client.resolve("/small")
        var buffer = [UInt8](repeating: 0, count: 4096)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            let handle = try manager.open(inode, flags: O_RDONLY).handle
            blackHole(try buffer.withUnsafeMutableBytes { try manager.read(handle: handle, offset: 0, into: $0) })
            try manager.flush(handle: handle)
            manager.release(handle: handle)
        }
        benchmark.stopMeasurement()
    }

    Benchmark("One break fanned out to 100 clients (store until all acknowledged)",
              configuration: .init(metrics: [.wallClock], maxDuration: .seconds(10), maxIterations: 200)) { benchmark in
        let cluster = try TestCluster()
        defer { cluster.shutdown() }
        let writer = PathClient(try cluster.addClient())
        try writer.writeFile("/shared", "v0")
        let fid = try writer.cacheManager.getAttributes(try writer.resolve("/shared"), handle: nil).status.fid
        let holders = (0..<100).map { i -> ServerConnection in
            let connection = ServerConnection(address: cluster.address, clientID: "holder-\(i)", epoch: 1,
                                              statistics: ClientStatistics(mode: "afs"))
            connection.setHandlers(hello: { _, _ in }, push: { _, ack in ack() })
            return connection
        }
        defer { holders.forEach { $0.close() } }
        for iteration in benchmark.scaledIterations {
            for holder in holders { _ = try holder.call(.fetchStatus(fid)) }
            benchmark.startMeasurement()
            try writer.writeFile("/shared", "v\(iteration)")
            benchmark.stopMeasurement()
        }
    }
}
