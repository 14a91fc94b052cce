import Foundation
import PeachClient
import PeachLocalCluster
import PeachProtocol
import PeachTesting
import Testing

/// The requests an AFS-mode operation costs, counted by the cache manager, and what `forget`
/// releases.
@Suite("Round trips and forgetting")
struct RoundTripTests {
    /// What `body` sent to the server, by request type.
    func requests(_ client: CacheManager, _ body: () throws -> Void) rethrows -> [String: Int] {
        let before = client.statistics.snapshot()
        try body()
        return client.statistics.snapshot().since(before).rpcs
    }

    @Test("a file with no cached copy and no promise is opened with one FetchData, no FetchStatus before it")
    func openWithoutFetchStatus() throws {
        try withCluster { cluster in
            let writer = PathClient(try cluster.addClient())
            try writer.writeFile("/f", "first")
            let reader = try cluster.addClient()
            let inode = try PathClient(reader).resolve("/f")
            try writer.writeFile("/f", "second")  // breaks the reader's promise; it has no copy
            var content: [UInt8] = []
            let sent = try requests(reader) {
                let reply = try reader.open(inode, flags: O_RDONLY)
                defer { reader.release(handle: reply.handle) }
                var buffer = [UInt8](repeating: 0, count: 64)
                let n = try buffer.withUnsafeMutableBytes { try reader.read(handle: reply.handle, offset: 0, into: $0) }
                content = Array(buffer.prefix(n))
            }
            #expect(String(decoding: content, as: UTF8.self) == "second")
            #expect(sent == ["FetchData": 1], "\(sent)")
        }
    }

    @Test("chmod, chown and utime of a file open and dirty here ride along with its StoreData")
    func statusRidesAlongWithStore() throws {
        try withCluster { cluster in
            let client = try cluster.addClient()
            let files = PathClient(client)
            let times = Timespec(seconds: 1_500_000_000, nanoseconds: 42)
            let sent = try requests(client) {
                let file = try files.create("/copied")
                try file.write(Array("data".utf8))
                let inode = try files.resolve("/copied")
                _ = try client.setAttributes(inode, SetAttributes(mode: 0o600), handle: file.handle)
                _ = try client.setAttributes(inode, SetAttributes(uid: 1234, gid: 99), handle: file.handle)
                _ = try client.setAttributes(inode, SetAttributes(atime: .at(times), mtime: .at(times)), handle: file.handle)
                try file.close()
            }
            #expect(sent["StoreStatus"] == nil, "\(sent)")
            #expect(sent["StoreData"] == 1 && sent["CreateFile"] == 1, "\(sent)")
            let seen = try PathClient(try cluster.addClient()).stat("/copied")
            #expect(seen.mode == 0o600 && seen.uid == 1234 && seen.gid == 99 && seen.size == 4)
            #expect(seen.mtime == times && seen.atime == times)
        }
    }

    @Test("a chmod of a closed file still goes to the server at once")
    func statusOfClosedFile() throws {
        try withCluster { cluster in
            let client = try cluster.addClient()
            let files = PathClient(client)
            try files.writeFile("/f", "x")
            let sent = try requests(client) {
                _ = try client.setAttributes(try files.resolve("/f"), SetAttributes(mode: 0o640), handle: nil)
            }
            #expect(sent == ["StoreStatus": 1])
            #expect(try PathClient(try cluster.addClient()).stat("/f").mode == 0o640)
        }
    }

    @Test("a listing kept across a status-only break is revalidated with one BulkStatus, not fetched again")
    func listingRevalidatedWithBulkStatus() throws {
        try withCluster { cluster in
            let other = PathClient(try cluster.addClient())
            try other.makeDirectory("/d")
            try other.writeFile("/d/x", "x")
            let client = try cluster.addClient()
            let files = PathClient(client)
            let directory = try files.resolve("/d")
            _ = try client.lookup(parent: directory, name: "x")
            _ = try other.cacheManager.setAttributes(try other.resolve("/d"), SetAttributes(mode: 0o750), handle: nil)
            let sent = try requests(client) { _ = try client.lookup(parent: directory, name: "x") }
            #expect(sent == ["BulkStatus": 1], "\(sent)")
            // A change of names still refetches the listing.
            try other.writeFile("/d/y", "y")
            #expect(try client.lookup(parent: directory, name: "y").attributes.status.size == 1)
        }
    }

    @Test("looking up the names of a directory nobody listed costs one BulkStatus per 50 names, no FetchStatus")
    func lookupsInBulk() throws {
        try withCluster { cluster in
            let writer = PathClient(try cluster.addClient())
            try writer.makeDirectory("/d")
            for i in 0..<100 { try writer.writeFile("/d/f\(i)", "\(i)") }
            let client = try cluster.addClient()
            let files = PathClient(client)
            let sent = try requests(client) {
                for i in 0..<100 {
                    let size = try files.stat("/d/f\(i)").size
                    #expect(size == UInt64("\(i)".utf8.count))
                }
            }
            // The root's and d's listings, then d's status with its siblings', then the 100 files'
            // in batches of 50 (AFS's AFSCBMAX, the server's limit).
            #expect(Request.maximumBulkStatusCount == 50)
            #expect(sent == ["FetchData": 2, "BulkStatus": 1 + 100 / 50], "\(sent)")
        }
    }

    @Test("forget releases what the kernel no longer references, in both designs; open and dirty files stay",
          arguments: ClientDesign.allCases)
    func forgetReleases(design: ClientDesign) throws {
        try withCluster { cluster in
            let writer = PathClient(try cluster.addClient())
            try writer.makeDirectory("/d")
            for i in 0..<200 { try writer.writeFile("/d/f\(i)", "\(i)") }
            let client = try cluster.addClient(design)
            let directory = try client.lookup(parent: FID.root.vnode, name: "d").inode
            var inodes: [Inode] = []
            for i in 0..<200 { inodes.append(try client.lookup(parent: directory, name: "f\(i)").inode) }
            // Looked up twice: two references to forget.
            _ = try client.lookup(parent: directory, name: "f0")
            let held = try client.open(inodes[1], flags: O_RDONLY)
            let known = client.statistics.snapshot().vnodes
            #expect(known >= 202)
            for inode in inodes { client.forget(inode, count: 1) }
            let after = client.statistics.snapshot().vnodes
            #expect(after == known - 198, "f0 (one reference left) and the open f1 stay")
            #expect(try client.getAttributes(inodes[1], handle: held.handle).status.size == 1)
            client.release(handle: held.handle)
            client.forget(inodes[0], count: 1)
            client.forget(inodes[1], count: 1)
            #expect(client.statistics.snapshot().vnodes == known - 200)
            // A name looked up again works as before.
            #expect(try client.lookup(parent: directory, name: "f7").attributes.status.size == 1)
        }
    }
}
