import Foundation
import PeachClient
import PeachLocalCluster
import PeachProtocol
import PeachTesting
import Testing

/// What must hold in both client designs, run against each (as JuiceFS runs one suite against
/// every metadata engine). In-process clients against a real server on loopback.
@Suite("Cache-manager behaviour, both designs")
struct CacheManagerBehaviourTests {
    @Test("once close() on A returned, the next open on B sees the new content", arguments: ClientDesign.allCases)
    func closeToOpen(_ design: ClientDesign) throws {
        try withCluster { cluster in
            let a = PathClient(try cluster.addClient(design))
            let b = PathClient(try cluster.addClient(design))
            try a.writeFile("/f", "one")
            #expect(try b.readText("/f") == "one")
            try a.writeFile("/f", "two, longer")
            #expect(try b.readText("/f") == "two, longer")
            try a.writeFile("/f", "3")
            #expect(try b.readText("/f") == "3")
        }
    }

    @Test("processes on one client see each other's writes at once", arguments: ClientDesign.allCases)
    func sameClient(_ design: ClientDesign) throws {
        try withCluster { cluster in
            let a = PathClient(try cluster.addClient(design))
            try a.writeFile("/f", "0123456789")
            let writer = try a.open("/f", flags: O_RDWR)
            let reader = try a.open("/f")
            try writer.write(Array("AB".utf8), offset: 2)
            #expect(String(decoding: try reader.readAll(), as: UTF8.self) == "01AB456789")
            try writer.close()
            try reader.close()
        }
    }

    @Test("large files round-trip byte for byte, across block boundaries", arguments: ClientDesign.allCases)
    func largeFile(_ design: ClientDesign) throws {
        try withCluster { cluster in
            let a = PathClient(try cluster.addClient(design))
            let b = PathClient(try cluster.addClient(design))
            var generator = SystemRandomNumberGenerator()
            let content = (0..<(3 << 20) + 12345).map { _ in UInt8.random(in: 0...255, using: &generator) }
            try a.writeFile("/big", content)
            #expect(try b.readFile("/big") == content)
            // Overwrite a range that straddles block boundaries.
            let file = try b.open("/big", flags: O_RDWR)
            let patch = [UInt8](repeating: 0xEE, count: 100_000)
            try file.write(patch, offset: 65_000)
            try file.close()
            var expected = content
            expected.replaceSubrange(65_000..<165_000, with: patch)
            #expect(try a.readFile("/big") == expected)
        }
    }

    @Test("namespace changes on A are seen by B's next lookup", arguments: ClientDesign.allCases)
    func namespace(_ design: ClientDesign) throws {
        try withCluster { cluster in
            let a = PathClient(try cluster.addClient(design))
            let b = PathClient(try cluster.addClient(design))
            try a.makeDirectory("/d")
            try a.writeFile("/d/x", "x")
            #expect(try b.readText("/d/x") == "x")
            try a.rename("/d/x", "/y")
            #expect(try b.readText("/y") == "x")
            try a.unlink("/y")
            #expect(throws: FileSystemError.self) { _ = try b.readFile("/y") }
        }
    }

    @Test("errors are a local file system's", arguments: ClientDesign.allCases)
    func errors(_ design: ClientDesign) throws {
        try withCluster { cluster in
            let a = PathClient(try cluster.addClient(design))
            try a.writeFile("/f", "x")
            try a.makeDirectory("/d")
            try a.writeFile("/d/inner", "x")
            func errno(_ body: () throws -> Void) -> Int32? {
                do { try body() } catch let error as FileSystemError { return error.errno } catch { return -1 }
                return nil
            }
            #expect(errno { _ = try a.readFile("/missing") } == ENOENT)
            #expect(errno { _ = try a.create("/f", exclusive: true) } == EEXIST)
            #expect(errno { try a.makeDirectory("/d") } == EEXIST)
            #expect(errno { try a.removeDirectory("/d") } == ENOTEMPTY)
            #expect(errno { try a.unlink("/d") } == EISDIR)
            #expect(errno { try a.removeDirectory("/f") } == ENOTDIR)
            #expect(errno { _ = try a.list("/f") } == ENOTDIR)
            #expect(errno { _ = try a.open("/d") } == EISDIR)
            #expect(errno { try a.writeFile("/" + String(repeating: "n", count: 256), "x") } == ENAMETOOLONG)
            try a.writeFile("/" + String(repeating: "n", count: 255), "ok")
        }
    }

    @Test("the statistics keep the contract's keys and meaning", arguments: ClientDesign.allCases)
    func statistics(_ design: ClientDesign) throws {
        try withCluster { cluster in
            let client = try cluster.addClient(design)
            let a = PathClient(client)
            try a.writeFile("/f", [UInt8](repeating: 1, count: 1000))
            _ = try a.readFile("/f")
            let stats = client.statistics.snapshot()
            #expect(stats.mode == design.rawValue)
            #expect(stats.opens == 2)
            #expect(stats.readBytes == 1000)
            #expect(stats.storedBytes == 1000)
            #expect(stats.serverRequests == stats.rpcs.values.reduce(0, +))
            #expect(stats.callbacksReceived == 0)
            let json = try JSONSerialization.jsonObject(with: Data(client.statistics.json().utf8)) as? [String: Any] ?? [:]
            for key in ["mode", "opens", "openHits", "reads", "readBytes", "readHitBytes", "fetches", "fetchedBytes", "stores",
                        "storedBytes", "callbacksReceived", "evictions", "cacheBytes", "serverRequests", "rpcs"] {
                #expect(json[key] != nil, "stats has \(key)")
            }
        }
    }
}
