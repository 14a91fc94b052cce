import Foundation
import NIOConcurrencyHelpers
import PeachClient
import PeachLocalCluster
import PeachProtocol
import PeachTesting
import Testing

/// The AFS-mode cache manager in-process against a real server on loopback.
@Suite("AFS-mode consistency, two clients")
struct AFSConsistencyTests {
    @Test("a descriptor B opened before A's close keeps the old content")
    func openDescriptorKeepsItsVersion() throws {
        try withCluster { cluster in
            let a = PathClient(try cluster.addClient())
            let b = PathClient(try cluster.addClient())
            try a.writeFile("/f", "old content")
            let held = try b.open("/f")
            try a.writeFile("/f", "NEW")
            #expect(String(decoding: try held.readAll(), as: UTF8.self) == "old content")
            try held.close()
            #expect(try b.readText("/f") == "NEW")
        }
    }

    @Test("a descriptor on a file another client renamed a new one over keeps its copy; its status says nlink 0")
    func descriptorOnReplacedFile() throws {
        try withCluster { cluster in
            let a = PathClient(try cluster.addClient())
            let b = PathClient(try cluster.addClient())
            try a.writeFile("/name", "the old file")
            let inode = try a.resolve("/name")
            let held = try a.open("/name")
            try b.writeFile("/next", "the new file")
            try b.rename("/next", "/name")
            // The server has no such file any more; the kernel asks for its attributes anyway.
            let attributes = try a.cacheManager.getAttributes(inode, handle: held.handle)
            #expect(attributes.status.linkCount == 0 && attributes.status.size == 12)
            #expect(String(decoding: try held.readAll(), as: UTF8.self) == "the old file")
            try held.close()
            #expect(try a.readText("/name") == "the new file")
        }
    }

    @Test("two writers: the last close wins, whole")
    func lastCloseWins() throws {
        try withCluster { cluster in
            let a = PathClient(try cluster.addClient())
            let b = PathClient(try cluster.addClient())
            try a.writeFile("/f", "base")
            let fromA = try a.open("/f", flags: O_RDWR | O_TRUNC)
            let fromB = try b.open("/f", flags: O_RDWR | O_TRUNC)
            try fromA.write(Array("written by A, long".utf8))
            try fromB.write(Array("by B".utf8))
            try fromA.close()
            try fromB.close()
            let c = PathClient(try cluster.addClient())
            #expect(try c.readText("/f") == "by B")
            #expect(try a.readText("/f") == "by B")
        }
    }

    @Test("a re-open under a valid callback costs no server request and its reads are hits")
    func openHit() throws {
        try withCluster { cluster in
            let a = PathClient(try cluster.addClient())
            let b = PathClient(try cluster.addClient())
            try a.writeFile("/f", String(repeating: "x", count: 10000))
            _ = try b.readFile("/f")
            let before = b.cacheManager.statistics.snapshot()
            let inode = try b.resolve("/f")
            let handle = try b.cacheManager.open(inode, flags: O_RDONLY).handle
            var buffer = [UInt8](repeating: 0, count: 20000)
            let n = try buffer.withUnsafeMutableBytes { try b.cacheManager.read(handle: handle, offset: 0, into: $0) }
            try b.cacheManager.flush(handle: handle)
            b.cacheManager.release(handle: handle)
            let after = b.cacheManager.statistics.snapshot()
            #expect(n == 10000)
            #expect(after.serverRequests == before.serverRequests)
            #expect(after.openHits == before.openHits + 1)
            #expect(after.readHitBytes - before.readHitBytes == 10000)
            #expect(before.readHitBytes == 0, "the first read followed a fetch")
        }
    }

    @Test("the server replies to a store only after the other client acknowledged the break")
    func storeWaitsForAcknowledgement() throws {
        try withCluster { cluster in
            let a = PathClient(try cluster.addClient())
            try a.writeFile("/f", "v1")
            let fid = try a.cacheManager.getAttributes(try a.resolve("/f"), handle: nil).status.fid
            // A bare connection standing in for a slow client: it acknowledges 300 ms late.
            let acknowledged = NIOLockedValueBox(false)
            let slow = ServerConnection(address: cluster.address, clientID: "slow", epoch: 1,
                                        statistics: ClientStatistics(mode: "afs"))
            slow.setHandlers(hello: { _, _ in }, push: { _, ack in
                DispatchQueue.global().asyncAfter(deadline: .now() + 0.3) {
                    acknowledged.withLockedValue { $0 = true }
                    ack()
                }
            })
            defer { slow.close() }
            _ = try slow.call(.fetchStatus(fid))
            try a.writeFile("/f", "v2")
            #expect(acknowledged.withLockedValue { $0 })
            #expect(cluster.server.statistics.snapshot().clientsDeclaredUnreachable == 0)
        }
    }

    @Test("a client that never acknowledges is declared unreachable after the timeout and told so")
    func silentClient() throws {
        try withCluster(callBackTimeout: 1) { cluster in
            let a = PathClient(try cluster.addClient())
            try a.writeFile("/f", "v1")
            let fid = try a.cacheManager.getAttributes(try a.resolve("/f"), handle: nil).status.fid
            let silent = ServerConnection(address: cluster.address, clientID: "silent", epoch: 1,
                                          statistics: ClientStatistics(mode: "afs"))
            let lost = NIOLockedValueBox<[Bool]>([])
            silent.setHandlers(hello: { reply, _ in lost.withLockedValue { $0.append(reply.callBacksLost) } },
                               push: { _, _ in })
            _ = try silent.call(.fetchStatus(fid))
            try a.writeFile("/f", "v2")
            #expect(cluster.server.statistics.snapshot().clientsDeclaredUnreachable == 1)
            silent.close()
            let again = ServerConnection(address: cluster.address, clientID: "silent", epoch: 1,
                                         statistics: ClientStatistics(mode: "afs"))
            again.setHandlers(hello: { reply, _ in lost.withLockedValue { $0.append(reply.callBacksLost) } }, push: { _, ack in ack() })
            defer { again.close() }
            try again.connect()
            #expect(lost.withLockedValue { $0 } == [false, true])
        }
    }

    @Test("a directory listed on B shows A's new file at once")
    func directoryCallbacks() throws {
        try withCluster { cluster in
            let a = PathClient(try cluster.addClient())
            let b = PathClient(try cluster.addClient())
            try a.makeDirectory("/d")
            #expect(try b.list("/d") == [])
            try a.writeFile("/d/new", "x")
            #expect(try b.list("/d") == ["new"])
            try a.rename("/d/new", "/moved")
            #expect(try b.list("/d") == [])
            #expect(try b.list("/").sorted() == ["d", "moved"])
            try a.unlink("/moved")
            #expect(throws: FileSystemError.self) { _ = try b.readFile("/moved") }
        }
    }

    @Test("open with O_TRUNC fetches nothing")
    func truncatingOpen() throws {
        try withCluster { cluster in
            let a = PathClient(try cluster.addClient())
            let b = PathClient(try cluster.addClient())
            try a.writeFile("/f", String(repeating: "y", count: 50000))
            try b.writeFile("/f", "short")
            #expect(b.cacheManager.statistics.snapshot().rpcs["FetchData"] ?? 0 == 1, "only the root directory was fetched")
            #expect(try a.readText("/f") == "short")
        }
    }
}
