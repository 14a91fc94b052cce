import Foundation
import NIOCore
import PeachClient
import PeachLocalCluster
import PeachProtocol
import PeachSupport
import PeachTesting
import Testing
@testable import PeachServer

/// One client can only hurt itself: a client that stops reading, trickles a frame, idles or
/// opens too many connections holds no thread, a bounded amount of memory, and delays nobody.
/// The deadlines below are far under the 60 s a stalled stream once cost every other client.
@Suite("Bounded resources", .serialized)
struct BoundedResourceTests {
    /// Runs `body` on another thread; true if it finished within `seconds`.
    func finishes(within seconds: Double, _ body: @escaping @Sendable () throws -> Void) -> (Bool, Double) {
        let done = DispatchSemaphore(value: 0)
        let start = Date()
        let failure = LockedBox<Error?>(nil)
        Thread.detachNewThread {
            do { try body() } catch { failure.set(error) }
            done.signal()
        }
        let finished = done.wait(timeout: .now() + seconds) == .success
        if let error = failure.get() { Issue.record("the other client failed: \(error)") }
        return (finished, Date().timeIntervalSince(start))
    }

    /// What another client does while the misbehaving one holds the server: stat, open and
    /// read, a small store.
    func otherClientWork(_ client: PathClient, _ round: Int) throws {
        _ = try client.stat("/small")
        #expect(try client.readText("/small") == "small")
        try client.writeFile("/other-\(round)", "stored")
    }

    func residentBytes() -> Int {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return (Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) * 1024
    }

    func fid(of path: String, _ client: PathClient) throws -> FID { try client.stat(path).fid }

    /// The server's upload files, once they are gone or after 5 s.
    func uploadFilesLeft(_ cluster: InProcessCluster) throws -> [String] {
        let uploads = cluster.directory.path + "/server/uploads"
        var left: [String] = []
        for _ in 0..<50 {
            left = try FileManager.default.contentsOfDirectory(atPath: uploads)
            if left.isEmpty { break }
            Thread.sleep(forTimeInterval: 0.1)
        }
        return left
    }

    @Test("a client that reads none of 8 FetchData replies of 8 MiB files delays no other client")
    func unreadFetches() throws {
        try withCluster { cluster in
            let writer = PathClient(try cluster.addClient())
            try writer.writeFile("/small", "small")
            var fids: [FID] = []
            for i in 0..<8 {
                try writer.writeFile("/big-\(i)", [UInt8](repeating: UInt8(i), count: 8 << 20))
                fids.append(try fid(of: "/big-\(i)", writer))
            }
            let raw = try RawProtocolClient(port: cluster.address.port)
            try raw.hello()
            for fid in fids { try raw.send(.fetchData(fid)) }
            Thread.sleep(forTimeInterval: 0.5)  // the server has filled the socket and waits on the client
            let other = PathClient(try cluster.addClient())
            for round in 0..<3 {
                let (finished, seconds) = finishes(within: 10) { try otherClientWork(other, round) }
                #expect(finished, "another client waited on the stalled one")
                print("bounded-resources: other client's stat+open+read+store with 8 unread fetches: \(Int(seconds * 1000)) ms")
            }
            // A new client connects and is served too.
            let late = PathClient(try cluster.addClient())
            #expect(finishes(within: 10) { try otherClientWork(late, 9) }.0)
        }
    }

    @Test("2000 unread READs of 1 MiB hold a bounded amount of memory and delay no other client")
    func unreadReads() throws {
        try withCluster { cluster in
            let writer = PathClient(try cluster.addClient())
            try writer.writeFile("/small", "small")
            try writer.writeFile("/big", [UInt8](repeating: 7, count: 1 << 20))
            let bigFID = try fid(of: "/big", writer)
            let before = residentBytes()
            let raw = try RawProtocolClient(port: cluster.address.port)
            try raw.hello()
            let sender = Thread { for _ in 0..<2000 { _ = try? raw.send(.read(bigFID, offset: 0, count: 1 << 20)) } }
            sender.start()
            Thread.sleep(forTimeInterval: 2)
            let grown = residentBytes() - before
            print("bounded-resources: RSS growth with 2000 unread 1 MiB READs: \(grown >> 20) MiB")
            #expect(grown < 256 << 20, "the server queued replies nobody reads")
            let other = PathClient(try cluster.addClient())
            let (finished, seconds) = finishes(within: 10) { try otherClientWork(other, 0) }
            #expect(finished)
            print("bounded-resources: other client's work with 2000 unread READs: \(Int(seconds * 1000)) ms")
            raw.shutdownConnection()
        }
    }

    @Test("a READ weighs what its reply may take, whatever credential precedes it; other requests a status")
    func replyWeights() {
        for credential in [Credential.root, Credential(uid: 5, gid: 5, groups: Array(0..<32))] {
            var body = ByteBuffer()
            RequestCodec.encode(.read(FID(vnode: 9), offset: 1 << 40, count: 70_000), credential: credential, into: &body)
            #expect(ConnectionHandler.replyWeight(of: Frame(kind: .request, id: 1, opcode: Opcode.read.rawValue, body: body)) == 70_512)
        }
        var huge = ByteBuffer()
        RequestCodec.encode(.read(FID(vnode: 9), offset: 0, count: .max), credential: .root, into: &huge)
        #expect(ConnectionHandler.replyWeight(of: Frame(kind: .request, id: 1, opcode: Opcode.read.rawValue, body: huge))
                == 512 + Frame.dataChunkSize)
        var ping = ByteBuffer()
        RequestCodec.encode(.ping, credential: .root, into: &ping)
        #expect(ConnectionHandler.replyWeight(of: Frame(kind: .request, id: 2, opcode: Opcode.ping.rawValue, body: ping)) == 512)
    }

    @Test("a frame begun and not finished closes its connection after the partial-frame timeout")
    func partialFrame() throws {
        try withCluster(limits: ConnectionLimits(partialFrameTimeout: .milliseconds(500))) { cluster in
            let raw = try RawProtocolClient(port: cluster.address.port)
            try raw.hello()
            // The header of a 1 MiB frame, then 10 bytes of it.
            var header = ByteBuffer()
            header.writeInteger(UInt32(1 << 20))
            try raw.send(bytes: Array(buffer: header) + [UInt8](repeating: 0, count: 10))
            #expect(raw.isClosedByServer(within: 5))
        }
    }

    @Test("a frame larger than any request is refused at its header")
    func oversizedFrame() throws {
        try withCluster { cluster in
            let raw = try RawProtocolClient(port: cluster.address.port)
            var header = ByteBuffer()
            header.writeInteger(UInt32((4 << 20) - 100))
            try raw.send(bytes: Array(buffer: header))
            #expect(raw.isClosedByServer(within: 5))
        }
    }

    @Test("connections past --max-clients are closed as they arrive; the others are served")
    func maximumClients() throws {
        try withCluster(limits: ConnectionLimits(maximumClients: 3)) { cluster in
            let first = try RawProtocolClient(port: cluster.address.port)
            try first.hello()
            let second = try RawProtocolClient(port: cluster.address.port)
            try second.hello()
            let third = try RawProtocolClient(port: cluster.address.port)
            try third.hello()
            let fourth = try RawProtocolClient(port: cluster.address.port)
            #expect(fourth.isClosedByServer(within: 5))
            let ping = try first.send(.ping)
            #expect(try first.reply(to: ping) == .success(.pong))
            // Once one goes, a new connection is admitted.
            third.shutdownConnection()
            Thread.sleep(forTimeInterval: 0.3)
            let fifth = try RawProtocolClient(port: cluster.address.port)
            #expect(try fifth.hello() != nil)
        }
    }

    @Test("an idle connection is closed unless its client holds callbacks and pings: pings alone, or callbacks held in silence past the lease, do not keep it")
    func idleConnections() throws {
        // callBackTimeout 5 s: a lease of 2.5 s.
        try withCluster(callBackTimeout: 5, limits: ConnectionLimits(idleTimeout: .milliseconds(500))) { cluster in
            func introduced(holdingCallBack: Bool) throws -> RawProtocolClient {
                let client = try RawProtocolClient(port: cluster.address.port)
                try client.hello()
                if holdingCallBack {
                    let fetch = try client.send(.fetchStatus(.root))
                    guard case .success = try client.reply(to: fetch) else { throw FileSystemError(EIO, "FetchStatus failed") }
                }
                return client
            }
            let silent = try RawProtocolClient(port: cluster.address.port)
            let quiet = try introduced(holdingCallBack: false)
            let pinger = try introduced(holdingCallBack: false)
            let holder = try introduced(holdingCallBack: true)
            let silentHolder = try introduced(holdingCallBack: true)
            #expect(silent.isClosedByServer(within: 5))
            #expect(quiet.isClosedByServer(within: 5))
            #expect(pinger.keepPinging(for: 5), "pings alone keep no connection")
            // Past the lease: still open while it pings, closed once silent that long.
            #expect(!holder.keepPinging(for: 3.5), "a callback holder that pings stays")
            #expect(silentHolder.isClosedByServer(within: 8), "a callback holder silent past its lease goes")
        }
    }

    @Test("BulkStatus names at most 50 FIDs, and one that renews no promise is answered while another request holds the database writer")
    func bulkStatusBounds() throws {
        try withCluster { cluster in
            let writer = PathClient(try cluster.addClient())
            var fids: [FID] = []
            for i in 0..<Request.maximumBulkStatusCount {
                try writer.writeFile("/f\(i)", "x")
                fids.append(try fid(of: "/f\(i)", writer))
            }
            let raw = try RawProtocolClient(port: cluster.address.port)
            try raw.hello()
            let tooMany = try raw.send(.bulkStatus(fids + [fids[0]]))
            #expect(try raw.reply(to: tooMany) == .failure(.invalidArgument))
            let first = try raw.send(.bulkStatus(fids))
            guard case .success(.bulkStatus(let entries, let expiry)) = try raw.reply(to: first) else {
                Issue.record("BulkStatus of \(fids.count) failed")
                return
            }
            #expect(entries.count == fids.count && expiry > 0)
            // The promises are fresh: asking again needs no writer, so it is answered while
            // another request holds the writer for seconds.
            let holding = DispatchSemaphore(value: 0)
            let release = DispatchSemaphore(value: 0)
            let store = cluster.server.store
            Thread.detachNewThread {
                try? store.database.write { _ in
                    holding.signal()
                    _ = release.wait(timeout: .now() + 20)
                }
            }
            holding.wait()
            defer { release.signal() }
            let again = try raw.send(.bulkStatus(fids))
            guard case .success(.bulkStatus(let renewed, let announced))? = try? raw.reply(to: again, timeout: 10) else {
                Issue.record("a BulkStatus of fresh promises waited for the writer")
                return
            }
            #expect(renewed == entries)
            #expect(announced == expiry)
        }
    }

    @Test("uploads announced together may not promise more than the disk's free space: each holds its size until its data is written")
    func uploadsReserveTheirSize() throws {
        let directory = try TemporaryDirectory(prefix: "peach-reserve", in: "/dev/shm")
        defer { directory.remove() }
        var st = statvfs()
        guard statvfs(directory.path, &st) == 0 else { Issue.record("statvfs failed"); return }
        let free = UInt64(st.f_bavail) * UInt64(st.f_frsize)
        let reserve = DiskReserve(directory: directory.path)
        let share = free / 10 * 6
        try reserve.reserve(share)
        // Each alone fits; the second on top of the first does not.
        try reserve.check(growth: free / 10 * 3)
        #expect(throws: StatusCode.noSpace) { try reserve.reserve(share) }
        reserve.release(share)
        try reserve.reserve(share)
        reserve.release(share)
    }

    /// A client that wrote "/target" ("old"), its FID, and a raw connection introduced to upload to it.
    func uploadTarget(_ cluster: InProcessCluster) throws -> (PathClient, FID, RawProtocolClient) {
        let writer = PathClient(try cluster.addClient())
        try writer.writeFile("/target", "old")
        let target = try fid(of: "/target", writer)
        let raw = try RawProtocolClient(port: cluster.address.port)
        try raw.hello()
        return (writer, target, raw)
    }

    @Test("an upload announced larger than the disk holds no room: other stores go on while it waits, and after it fails")
    func oversizedAnnouncementHoldsNothing() throws {
        try withCluster { cluster in
            let (writer, target, raw) = try uploadTarget(cluster)
            let id = try raw.send(.storeData(target, size: VolumeLimits.defaultMaximumFileSize, mtime: .now()))
            // Announced, with no data yet: a small store (kept in memory) and a large one go on.
            try writer.writeFile("/small", "fits")
            try writer.writeFile("/large", [UInt8](repeating: 1, count: 1 << 20))
            // Its first data frame finds no room; nothing is held for it after that either.
            try raw.send(Frame(kind: .data, id: id, opcode: Opcode.storeData.rawValue, body: ByteBuffer(bytes: [UInt8](repeating: 7, count: 4096))))
            try writer.writeFile("/small2", "fits too")
            #expect(try writer.readText("/small") == "fits" && writer.readText("/small2") == "fits too")
            #expect(try writer.readText("/target") == "old")
        }
    }

    @Test("an upload whose client stops sending is dropped with its connection after the idle timeout, and its file deleted")
    func stalledUpload() throws {
        try withCluster(limits: ConnectionLimits(idleTimeout: .milliseconds(500))) { cluster in
            let (writer, target, raw) = try uploadTarget(cluster)
            let id = try raw.send(.storeData(target, size: 1 << 20, mtime: .now()))
            try raw.send(Frame(kind: .data, id: id, opcode: Opcode.storeData.rawValue, body: ByteBuffer(bytes: [UInt8](repeating: 7, count: 4096))))
            #expect(raw.isClosedByServer(within: 5), "a stalled upload kept its connection")
            #expect(try uploadFilesLeft(cluster).isEmpty)
            #expect(try writer.readText("/target") == "old")
        }
    }

    @Test("one principal holds at most half the large-frame budget and unidentified connections an eighth; a waiter over its share waits for its own frames")
    func frameBudgetShares() {
        let budget = InboundMemoryBudget(limit: 16 << 20)
        var attacker = 0
        while budget.reserve(1 << 20, owner: "local:1000") { attacker += 1 }
        #expect(attacker == 8, "one principal took \(attacker) MiB of 16")
        #expect(budget.reserve(1 << 20, owner: "local:0"), "another principal still gets a frame in")
        var anonymous = 0
        while budget.reserve(1 << 20, owner: InboundMemoryBudget.unidentified) { anonymous += 1 }
        #expect(anonymous == 2)
        let woken = LockedBox<[String]>([])
        budget.whenAvailable(owner: "local:1000") { woken.set(woken.get() + ["attacker"]) }
        budget.release(1 << 20, owner: "local:0")
        #expect(woken.get().isEmpty, "another's release wakes no one over its share")
        budget.release(1 << 20, owner: "local:1000")
        #expect(woken.get() == ["attacker"])
    }

    @Test("a closed connection leaves nothing behind: its handler and channel are freed, with or without Hello")
    func closedConnectionsAreFreed() throws {
        try withCluster { cluster in
            let statistics = cluster.server.statistics
            for round in 0..<4 {
                var clients: [RawProtocolClient] = []
                for i in 0..<50 {
                    let client = try RawProtocolClient(port: cluster.address.port)
                    if i % 2 == 0 { try client.hello(design: .nfs) }
                    clients.append(client)
                }
                clients.forEach { $0.shutdownConnection() }
                clients = []
                var live = statistics.liveConnectionHandlers
                for _ in 0..<100 where live > 0 {
                    Thread.sleep(forTimeInterval: 0.05)
                    live = statistics.liveConnectionHandlers
                }
                // Before, every handler stayed (a cycle with its context), about 4.4 KB each.
                #expect(live == 0, "round \(round): \(live) handlers of closed connections still alive")
            }
        }
    }

    @Test("a data chunk of an upload the client never finishes is deleted when the connection closes")
    func abandonedUpload() throws {
        try withCluster { cluster in
            let (writer, target, raw) = try uploadTarget(cluster)
            let id = try raw.send(.storeData(target, size: 10, mtime: .now()))
            try raw.send(Frame(kind: .data, id: id, opcode: Opcode.storeData.rawValue, body: ByteBuffer(bytes: [1, 2, 3])))
            Thread.sleep(forTimeInterval: 0.3)
            raw.shutdownConnection()
            #expect(try uploadFilesLeft(cluster).isEmpty)
            #expect(try writer.readText("/target") == "old")
        }
    }
}

/// A value shared with another thread.
final class LockedBox<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func set(_ newValue: Value) { lock.withLock { value = newValue } }
    func get() -> Value { lock.withLock { value } }
}
