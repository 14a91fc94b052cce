import Foundation
import PeachClient
import PeachLocalCluster
import PeachProtocol
import PeachTesting
import Testing

/// The NFS-style client's own guarantees, and its documented staleness: each window is
/// observed, then its end once the (short) timeout has passed.
@Suite("NFS-style client")
struct NFSBehaviourTests {
    /// Short attribute timeouts so each staleness window ends within the test.
    static func shortTimeouts(cto: Bool = true, noac: Bool = false) -> NFSOptions {
        var options = NFSOptions()
        options.acregmin = 1
        options.acregmax = 1
        options.acdirmin = 1
        options.acdirmax = 1
        options.cto = cto
        options.noac = noac
        return options
    }

    static func pastTimeout() { usleep(1_300_000) }

    @Test("stat of a file another client changed shows the old size until acregmin passes")
    func staleAttributes() throws {
        try withCluster { cluster in
            let a = PathClient(try cluster.addNFSClient(Self.shortTimeouts()))
            let b = PathClient(try cluster.addNFSClient(Self.shortTimeouts()))
            try a.writeFile("/f", "12345")
            #expect(try b.stat("/f").size == 5)
            try a.writeFile("/f", "1234567890")
            #expect(try b.stat("/f").size == 5, "inside the attribute timeout")
            Self.pastTimeout()
            #expect(try b.stat("/f").size == 10)
        }
    }

    @Test("a descriptor held open keeps reading cached blocks until the timeout passes")
    func staleOpenDescriptor() throws {
        try withCluster { cluster in
            let a = PathClient(try cluster.addNFSClient(Self.shortTimeouts()))
            let b = PathClient(try cluster.addNFSClient(Self.shortTimeouts()))
            try a.writeFile("/f", "old content")
            let held = try b.open("/f")
            #expect(String(decoding: try held.readAll(), as: UTF8.self) == "old content")
            try a.writeFile("/f", "NEW CONTENT")
            #expect(String(decoding: try held.readAll(), as: UTF8.self) == "old content", "cached blocks")
            Self.pastTimeout()
            #expect(String(decoding: try held.readAll(), as: UTF8.self) == "NEW CONTENT")
            try held.close()
        }
    }

    @Test("a directory listed before another client created a file shows it only after acdirmin")
    func staleDirectory() throws {
        try withCluster { cluster in
            let a = PathClient(try cluster.addNFSClient(Self.shortTimeouts()))
            let b = PathClient(try cluster.addNFSClient(Self.shortTimeouts()))
            try a.makeDirectory("/d")
            #expect(try b.list("/d") == [])
            try a.writeFile("/d/new", "x")
            #expect(try b.list("/d") == [], "inside the directory attribute timeout")
            Self.pastTimeout()
            #expect(try b.list("/d") == ["new"])
        }
    }

    @Test("with nocto, a re-open inside acregmin reads the old content; with cto it does not")
    func noCloseToOpen() throws {
        try withCluster { cluster in
            let a = PathClient(try cluster.addNFSClient(Self.shortTimeouts()))
            let nocto = PathClient(try cluster.addNFSClient(Self.shortTimeouts(cto: false)))
            let cto = PathClient(try cluster.addNFSClient(Self.shortTimeouts()))
            try a.writeFile("/f", "version 1")
            #expect(try nocto.readText("/f") == "version 1")
            #expect(try cto.readText("/f") == "version 1")
            try a.writeFile("/f", "version 2")
            #expect(try nocto.readText("/f") == "version 1", "nocto trusts its cached attributes")
            #expect(try cto.readText("/f") == "version 2", "cto asks at open")
            Self.pastTimeout()
            #expect(try nocto.readText("/f") == "version 2")
        }
    }

    @Test("with noac, another client's change shows at once")
    func noAttributeCache() throws {
        try withCluster { cluster in
            let a = PathClient(try cluster.addNFSClient(Self.shortTimeouts()))
            let b = PathClient(try cluster.addNFSClient(Self.shortTimeouts(noac: true)))
            try a.writeFile("/f", "12345")
            #expect(try b.stat("/f").size == 5)
            try a.writeFile("/f", "1234567890")
            #expect(try b.stat("/f").size == 10)
        }
    }

    @Test("a 4 KiB read of a 64 MiB file moves one block, not the file")
    func smallReadOfLargeFile() throws {
        try withCluster { cluster in
            let writer = PathClient(try cluster.addClient())
            try writer.writeFile("/large", [UInt8](repeating: 0x5A, count: 64 << 20))
            let client = try cluster.addNFSClient()
            let file = try PathClient(client).open("/large")
            let before = client.statistics.snapshot()
            #expect(try file.read(offset: 10 << 20, count: 4096) == [UInt8](repeating: 0x5A, count: 4096))
            try file.close()
            let after = client.statistics.snapshot()
            #expect(after.rpcs["READ", default: 0] - before.rpcs["READ", default: 0] == 1)
            #expect(after.fetchedBytes - before.fetchedBytes == UInt64(NFSOptions().blockSize))
        }
    }

    @Test("partial-block writes send only the written range, and keep the rest of the block")
    func partialBlockWrites() throws {
        try withCluster { cluster in
            let a = PathClient(try cluster.addNFSClient())
            let client = try cluster.addNFSClient()
            let b = PathClient(client)
            try a.writeFile("/f", [UInt8](repeating: 1, count: 200_000))
            let file = try b.open("/f", flags: O_RDWR)
            try file.write([2, 2, 2], offset: 65_535)
            try file.close()
            let stats = client.statistics.snapshot()
            #expect(stats.storedBytes == 3)
            #expect(stats.rpcs["WRITE"] == 2, "the range straddles two blocks")
            var expected = [UInt8](repeating: 1, count: 200_000)
            expected.replaceSubrange(65_535..<65_538, with: [2, 2, 2])
            #expect(try a.readFile("/f") == expected)
        }
    }

    @Test("the block cache is bounded by its size and evicts the least recently used blocks")
    func blockCacheBound() throws {
        try withCluster { cluster in
            let writer = PathClient(try cluster.addClient())
            try writer.writeFile("/f", [UInt8](repeating: 3, count: 1 << 20))
            var options = NFSOptions()
            options.cacheSize = 256 << 10
            let client = try cluster.addNFSClient(options)
            #expect(try PathClient(client).readFile("/f").count == 1 << 20)
            let stats = client.statistics.snapshot()
            #expect(stats.cacheBytes <= 256 << 10)
            #expect(stats.evictions >= 12)
        }
    }

    @Test("an NFS-style write breaks the callbacks of AFS-mode clients")
    func mixedModes() throws {
        try withCluster { cluster in
            let afsClient = try cluster.addClient()
            let afs = PathClient(afsClient)
            let nfs = PathClient(try cluster.addNFSClient())
            try afs.writeFile("/shared", "from afs")
            #expect(try nfs.readText("/shared") == "from afs")
            _ = try afs.readText("/shared")
            let before = afsClient.statistics.snapshot().callbacksReceived
            try nfs.writeFile("/shared", "from nfs")
            #expect(afsClient.statistics.snapshot().callbacksReceived > before)
            #expect(try afs.readText("/shared") == "from nfs")
            #expect(cluster.server.statistics.snapshot().callBacksBroken >= 1)
        }
    }

    @Test("writes into one block from many threads at once keep every byte (the kernel sends a mapping's pages in parallel)")
    func concurrentWritesIntoOneBlock() throws {
        try withCluster { cluster in
            let writer = PathClient(try cluster.addNFSClient())
            let blockSize = NFSOptions().blockSize
            let pages = blockSize / 4096
            let rounds = 40
            let file = try writer.create("/parallel")
            // Round r writes block r, each of its pages from a thread of its own, as 16 WRITE
            // requests on 16 FUSE threads would: the block starts with no dirty or cached copy.
            for round in 0..<rounds {
                DispatchQueue.concurrentPerform(iterations: pages) { page in
                    let bytes = [UInt8](repeating: UInt8(truncatingIfNeeded: round &* 16 &+ page &+ 1), count: 4096)
                    try? file.write(bytes, offset: UInt64(round * blockSize + page * 4096))
                }
            }
            try file.close()
            let reader = PathClient(try cluster.addNFSClient())
            let content = try reader.readFile("/parallel")
            #expect(content.count == rounds * blockSize)
            var lost: [String] = []
            for round in 0..<rounds {
                for page in 0..<pages {
                    let start = round * blockSize + page * 4096
                    if content[start] != UInt8(truncatingIfNeeded: round &* 16 &+ page &+ 1) { lost.append("block \(round) page \(page)") }
                }
            }
            #expect(lost.isEmpty, "lost: \(lost.prefix(10))")
        }
    }
}
