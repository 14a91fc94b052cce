import Foundation
import GRDB
import PeachClient
import PeachLocalCluster
import PeachProtocol
import PeachTesting
import Testing

@Suite("AFS-mode disk cache")
struct AFSCacheTests {
    @Test("LRU eviction keeps the cache under its size and never evicts an open file")
    func eviction() throws {
        try withCluster { cluster in
            let writer = PathClient(try cluster.addClient())
            for i in 0..<4 { try writer.writeFile("/f\(i)", [UInt8](repeating: UInt8(i), count: 60_000)) }
            let small = try cluster.addClient(cacheSize: 150_000)
            let reader = PathClient(small)
            let held = try reader.open("/f0")
            for i in 1..<4 { #expect(try reader.readFile("/f\(i)") == [UInt8](repeating: UInt8(i), count: 60_000)) }
            let stats = small.statistics.snapshot()
            #expect(stats.evictions >= 1)
            #expect(stats.cacheBytes <= 180_000)
            #expect(try held.readAll() == [UInt8](repeating: 0, count: 60_000))
            try held.close()
        }
    }

    @Test("after a restart, an unchanged file is revalidated with one status request, not refetched")
    func persistentCache() throws {
        try withCluster { cluster in
            let writer = PathClient(try cluster.addClient())
            try writer.writeFile("/big", [UInt8](repeating: 7, count: 300_000))
            let first = try cluster.addClient(named: "persistent")
            _ = try PathClient(first).readFile("/big")
            cluster.stopClient(first)
            let restarted = try cluster.addClient(named: "persistent")
            #expect(try PathClient(restarted).readFile("/big").count == 300_000)
            let stats = restarted.statistics.snapshot()
            #expect(stats.fetchedBytes < 300_000, "the file's data came from the disk cache")
            #expect(stats.rpcs["FetchStatus"] ?? 0 >= 1)
        }
    }

    @Test("an unmount gives every promise up: a change after it breaks nothing and waits for no one")
    func unmountGivesPromisesUp() throws {
        try withCluster { cluster in
            let writer = PathClient(try cluster.addClient())
            try writer.writeFile("/f", "before")
            let leaving = try cluster.addClient(named: "leaving")
            #expect(try PathClient(leaving).readText("/f") == "before")
            #expect(try cluster.server.callBackCount() > 0)
            cluster.stopClient(leaving)
            let before = cluster.server.statistics.snapshot()
            try writer.writeFile("/f", "after")
            let after = cluster.server.statistics.snapshot()
            #expect(after.callBacksBroken == before.callBacksBroken)
            #expect(after.breaksWaitingForAbsentClients == 0)
        }
    }

    @Test("a file changed while the client was away is refetched after the restart")
    func restartSeesChanges() throws {
        try withCluster { cluster in
            let writer = PathClient(try cluster.addClient())
            try writer.writeFile("/f", "before")
            let first = try cluster.addClient(named: "away")
            #expect(try PathClient(first).readText("/f") == "before")
            cluster.stopClient(first)
            try writer.writeFile("/f", "after")
            let restarted = try cluster.addClient(named: "away")
            #expect(try PathClient(restarted).readText("/f") == "after")
        }
    }

    @Test("fs flush stores a dirty file and drops the copy; the next open fetches again")
    func flushCachedCopy() throws {
        try withCluster { cluster in
            let client = try cluster.addClient()
            let a = PathClient(client)
            try a.writeFile("/f", "data")
            try client.flushCachedCopy(try a.resolve("/f"))
            let before = client.statistics.snapshot().fetches
            #expect(try a.readText("/f") == "data")
            #expect(client.statistics.snapshot().fetches == before + 1)
        }
    }

    @Test("listing a directory fetches its entries' statuses in bulk, so lookups after it cost nothing")
    func bulkStatusOnReaddir() throws {
        try withCluster { cluster in
            let writer = PathClient(try cluster.addClient())
            try writer.makeDirectory("/d")
            for i in 0..<200 { try writer.writeFile("/d/f\(i)", "x") }
            let client = try cluster.addClient()
            let reader = PathClient(client)
            _ = try reader.resolve("/d")
            let beforeListing = client.statistics.snapshot()
            #expect(try reader.list("/d").count == 200)
            let afterListing = client.statistics.snapshot()
            #expect(afterListing.since(beforeListing).rpcs["BulkStatus"] == 200 / Request.maximumBulkStatusCount, "200 statuses in batches of 50")
            for i in 0..<200 { #expect(try reader.stat("/d/f\(i)").size == 1) }
            #expect(client.statistics.snapshot().serverRequests == afterListing.serverRequests)
        }
    }

    @Test("the callbacks listing names held promises with their paths")
    func callBackListing() throws {
        try withCluster { cluster in
            let client = try cluster.addClient()
            let a = PathClient(client)
            try a.makeDirectory("/dir")
            try a.writeFile("/dir/file", "x")
            let paths = Set(client.callBacks().compactMap(\.path))
            #expect(paths.isSuperset(of: ["/", "/dir", "/dir/file"]))
            #expect(client.callBacks().allSatisfy { $0.expiresAt > UInt64(Date().timeIntervalSince1970) })
        }
    }

    @Test("a write whose dirty mark the cache index cannot record fails with EIO and changes nothing; the next one records it")
    func unrecordedDirtyMark() throws {
        try withCluster { cluster in
            let client = PathClient(try cluster.addClient(named: "a"))
            try client.writeFile("/f", "stored")
            // Another connection holds the index's write lock: the dirty mark cannot be written.
            var configuration = Configuration()
            configuration.allowsUnsafeTransactions = true  // the lock stays held between the two calls
            let index = try DatabaseQueue(path: cluster.directory.path + "/cache-a/index.sqlite", configuration: configuration)
            try index.inDatabase { db in try db.execute(sql: "BEGIN IMMEDIATE") }
            let file = try client.open("/f", flags: O_RDWR)
            #expect(throws: FileSystemError.self) { try file.write(Array("CHANGED".utf8)) }
            #expect(try file.readAll() == Array("stored".utf8), "the refused write reached the cached copy")
            // The lock goes: the next write records its mark, and the close stores it.
            try index.inDatabase { db in try db.execute(sql: "ROLLBACK") }
            try file.write(Array("changed".utf8))
            try file.close()
            #expect(try PathClient(try cluster.addClient(named: "b")).readText("/f") == "changed")
        }
    }
}
