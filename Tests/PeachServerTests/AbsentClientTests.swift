import Foundation
import PeachClient
import PeachLocalCluster
import PeachProtocol
import PeachTesting
import Testing
@testable import PeachServer

/// What one principal can make everyone else wait for (issue 18, item 3). A change waits for a
/// client that holds a promise it breaks and is away, until that client's lease runs out. A local
/// user could make up client ids that each take a promise on `/` and vanish, and every mkdir in
/// `/` waited a lease. Now: promises only on what the caller may read, a principal whose client
/// made a change wait gets none for a while, a farewell gives every promise up at once, and a
/// principal's client ids are bounded.
@Suite("Absent clients and what they make others wait for")
struct AbsentClientTests {
    static let mallory: uid_t = 1000
    static let trudy: uid_t = 1001

    /// The promise a FetchStatus reply announces (0: none).
    func promiseExpiry(_ client: RawProtocolClient, on fid: FID) throws -> UInt64 {
        let id = try client.send(.fetchStatus(fid))
        guard case .success(.status(_, let expiry)) = try client.reply(to: id) else {
            throw RawProtocolClient.Failure(description: "FetchStatus failed")
        }
        return expiry
    }

    func makeDirectory(_ client: RawProtocolClient, _ name: String, mode: UInt32 = 0o755) throws -> FID {
        let id = try client.send(.makeDir(CreateRequest(directory: .root, name: name, type: .directory, mode: mode, uid: 0, gid: 0)))
        guard case .success(.namespace(let made, _)) = try client.reply(to: id, timeout: 30), let fid = made.target?.fid else {
            throw RawProtocolClient.Failure(description: "mkdir \(name) failed")
        }
        return fid
    }

    /// A client of `owner` that takes a promise on `/` and leaves without a word.
    func throwawayClient(_ cluster: InProcessCluster, owner: uid_t) throws -> UInt64 {
        let client = try RawProtocolClient(port: cluster.address.port, owner: owner)
        #expect(try client.hello().code == .ok)
        let expiry = try promiseExpiry(client, on: .root)
        client.shutdownConnection()
        return expiry
    }

    func waitUntilGone(_ cluster: InProcessCluster, clients expected: Int) throws {
        let deadline = Date().addingTimeInterval(10)
        while cluster.server.connectedClients > expected, deadline.timeIntervalSinceNow > 0 { Thread.sleep(forTimeInterval: 0.02) }
        #expect(cluster.server.connectedClients == expected)
        Thread.sleep(forTimeInterval: 0.1)  // and its registration is gone with it
    }

    @Test("a promise only on what the caller may read: none on root's 0700 directory for another user")
    func promisesOnlyWhereReadable() throws {
        try withCluster { cluster in
            let root = try RawProtocolClient(port: cluster.address.port)
            #expect(try root.hello().code == .ok)
            let secret = try makeDirectory(root, "secret", mode: 0o700)
            let open = try makeDirectory(root, "open", mode: 0o755)
            let mallory = try RawProtocolClient(port: cluster.address.port, owner: Self.mallory)
            #expect(try mallory.hello().code == .ok)
            #expect(try promiseExpiry(mallory, on: secret) == 0)
            #expect(try promiseExpiry(mallory, on: open) > 0)
            #expect(try promiseExpiry(root, on: secret) > 0)
            // So a change in root's private directory never waits for mallory.
            let breaksBefore = cluster.server.statistics.snapshot().callBacksBroken
            let chmod = try root.send(.storeStatus(secret, SetAttributes(mode: 0o711)))
            #expect(try root.reply(to: chmod).code == .ok)
            #expect(cluster.server.statistics.snapshot().callBacksBroken == breaksBefore)
        }
    }

    @Test("throwaway client ids make one change wait, then their principal gets no promises; others still do")
    func throwawayClientsStopPromises() throws {
        // A lease of 1 s keeps the one wait short.
        try withCluster(callBackTimeout: 2) { cluster in
            let root = try RawProtocolClient(port: cluster.address.port)
            #expect(try root.hello().code == .ok)
            #expect(try throwawayClient(cluster, owner: Self.mallory) > 0)
            try waitUntilGone(cluster, clients: 1)
            // The first change waits for the vanished client: its lease may still be running.
            _ = try makeDirectory(root, "first")
            #expect(cluster.server.statistics.snapshot().breaksWaitingForAbsentClients == 1)
            // From then on mallory's new ids are served without promises, and changes wait for none.
            for round in 0..<3 {
                #expect(try throwawayClient(cluster, owner: Self.mallory) == 0)
                try waitUntilGone(cluster, clients: 1)
                _ = try makeDirectory(root, "next\(round)")
            }
            #expect(cluster.server.statistics.snapshot().breaksWaitingForAbsentClients == 1)
            // Another principal is not affected, and root's own promises hold.
            let trudy = try RawProtocolClient(port: cluster.address.port, owner: Self.trudy)
            #expect(try trudy.hello().code == .ok)
            #expect(try promiseExpiry(trudy, on: .root) > 0)
            #expect(try promiseExpiry(root, on: .root) > 0)
        }
    }

    @Test("a suspension ends: after its period the principal is promised again")
    func suspensionEnds() throws {
        try withCluster(callBackTimeout: 2, limits: ConnectionLimits(promiseSuspension: .seconds(2))) { cluster in
            let root = try RawProtocolClient(port: cluster.address.port)
            #expect(try root.hello().code == .ok)
            _ = try throwawayClient(cluster, owner: Self.mallory)
            try waitUntilGone(cluster, clients: 1)
            _ = try makeDirectory(root, "first")
            #expect(try throwawayClient(cluster, owner: Self.mallory) == 0)
            Thread.sleep(forTimeInterval: 2.2)
            #expect(try throwawayClient(cluster, owner: Self.mallory) > 0)
        }
    }

    @Test("a farewell gives every promise up: the next change breaks nothing and waits for no one")
    func farewellGivesPromisesUp() throws {
        try withCluster { cluster in
            let root = try RawProtocolClient(port: cluster.address.port)
            #expect(try root.hello().code == .ok)
            let mallory = try RawProtocolClient(port: cluster.address.port, owner: Self.mallory)
            #expect(try mallory.hello().code == .ok)
            #expect(try promiseExpiry(mallory, on: .root) > 0)
            let farewell = try mallory.send(.giveUpAllCallBacks)
            #expect(try mallory.reply(to: farewell).code == .ok)
            // Nothing it asks on its way out is promised.
            #expect(try promiseExpiry(mallory, on: .root) == 0)
            mallory.shutdownConnection()
            try waitUntilGone(cluster, clients: 1)
            let before = cluster.server.statistics.snapshot()
            _ = try makeDirectory(root, "after")
            let after = cluster.server.statistics.snapshot()
            #expect(after.callBacksBroken == before.callBacksBroken)
            #expect(after.breaksWaitingForAbsentClients == 0)
            // Leaving politely costs no suspension.
            #expect(try throwawayClient(cluster, owner: Self.mallory) > 0)
        }
    }

    @Test("a client that said farewell with a break unacknowledged is waited for by no one once it has gone")
    func farewellWithABreakInFlight() throws {
        try withCluster { cluster in
            let root = try RawProtocolClient(port: cluster.address.port)
            #expect(try root.hello().code == .ok)
            let leaving = try RawProtocolClient(port: cluster.address.port, owner: Self.mallory)
            #expect(try leaving.hello().code == .ok)
            #expect(try promiseExpiry(leaving, on: .root) > 0)
            let mkdir = try root.send(.makeDir(CreateRequest(directory: .root, name: "d", type: .directory, mode: 0o755, uid: 0, gid: 0)))
            // The break arrives and is not acknowledged; then the farewell, and the client goes.
            let push = try #require(try leaving.receiveFrame())
            #expect(push.kind == .push)
            let farewell = try leaving.send(.giveUpAllCallBacks)
            #expect(try leaving.reply(to: farewell).code == .ok)
            leaving.shutdownConnection()
            #expect(try root.reply(to: mkdir, timeout: 30).code == .ok)
            let counted = cluster.server.statistics.snapshot()
            #expect(counted.breaksWaitingForAbsentClients == 0 && counted.clientsDeclaredUnreachable == 0)
        }
    }

    @Test("a principal has a bounded number of client ids: idle ones make room, ones holding promises do not")
    func clientIDsPerPrincipalAreBounded() throws {
        try withCluster(limits: ConnectionLimits(maximumClientIDsPerPrincipal: 3)) { cluster in
            var connected: [String: RawProtocolClient] = [:]
            for name in ["a", "b", "c"] {
                let client = try RawProtocolClient(port: cluster.address.port, owner: Self.mallory)
                #expect(try client.hello(clientID: "mallory-\(name)").code == .ok)
                connected[name] = client
            }
            let extra = try RawProtocolClient(port: cluster.address.port, owner: Self.mallory)
            #expect(try extra.hello(clientID: "mallory-d").code == .busy)
            // An id that left holding nothing makes room for a new one.
            connected.removeValue(forKey: "a")?.shutdownConnection()
            try waitUntilGone(cluster, clients: 3)  // b, c and the refused one
            #expect(try extra.hello(clientID: "mallory-d").code == .ok)
            #expect(try cluster.server.store.clientTableRows().clients == 3)
            // One that left holding a promise does not: it may still trust it.
            #expect(try promiseExpiry(connected["b"]!, on: .root) > 0)
            connected.removeValue(forKey: "b")?.shutdownConnection()
            connected.removeValue(forKey: "c")?.shutdownConnection()
            try waitUntilGone(cluster, clients: 1)
            let e = try RawProtocolClient(port: cluster.address.port, owner: Self.mallory)
            #expect(try e.hello(clientID: "mallory-e").code == .ok)  // takes c's place
            let f = try RawProtocolClient(port: cluster.address.port, owner: Self.mallory)
            #expect(try f.hello(clientID: "mallory-f").code == .busy)
            // Another principal is not limited by mallory's ids, and root on the server's machine
            // by none (as `bench scale` needs).
            var roots: [RawProtocolClient] = []
            for n in 0..<5 {
                let root = try RawProtocolClient(port: cluster.address.port)
                #expect(try root.hello(clientID: "root-\(n)").code == .ok)
                roots.append(root)
            }
        }
    }
}
