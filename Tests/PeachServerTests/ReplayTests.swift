import Foundation
import NIOCore
import PeachLocalCluster
import PeachProtocol
import PeachSupport
import PeachTesting
import Testing
@testable import PeachServer

/// Numbered requests are carried out once: a repeat, after a lost reply or a server restart,
/// gets the reply recorded with the change (issue 9).
@Suite("Exactly-once requests")
struct ReplayTests {
    func numbered(_ sequence: UInt64, settledBelow: UInt64 = 1) -> Requester {
        .client("a", design: .afs, number: RequestNumber(sequence: sequence, settledBelow: settledBelow))
    }

    @Test("a repeated create, rename or remove gets the first reply and changes nothing more, even after a restart")
    func repeatsAreAnswered() throws {
        let directory = try TemporaryDirectory(prefix: "peach-replay")
        defer { directory.remove() }
        let root = directory.path + "/root"
        var store = try VolumeStore(root: root)
        _ = try store.introduce(client: "a", epoch: 1)
        let processor = { RequestProcessor(store: store) }
        let create = Request.createFile(CreateRequest(directory: .root, name: "f", type: .regular, mode: 0o644, uid: 0, gid: 0))
        let first = try processor().process(create, for: numbered(1)).reply
        #expect(try processor().process(create, for: numbered(1)).reply == first, "not EEXIST: the recorded reply")
        let rename = Request.rename(fromDirectory: .root, fromName: "f", toDirectory: .root, toName: "g")
        let renamed = try processor().process(rename, for: numbered(2)).reply
        // The server crashes and comes back; the client repeats what it got no answer to.
        store.releaseRoot()
        store = try VolumeStore(root: root)
        _ = try store.introduce(client: "a", epoch: 1)
        #expect(try processor().process(rename, for: numbered(2)).reply == renamed, "not ENOENT: the recorded reply")
        let remove = Request.removeFile(directory: .root, name: "g")
        let removed = try processor().process(remove, for: numbered(3)).reply
        #expect(try processor().process(remove, for: numbered(3)).reply == removed)
        // Settled requests are forgotten: the same number later is a new request.
        #expect(throws: StatusCode.notFound) { try processor().process(remove, for: numbered(3, settledBelow: 4)) }
        // Unnumbered requests are never answered from the record.
        #expect(throws: StatusCode.notFound) { try processor().process(remove, for: .afs("a")) }
        store.releaseRoot()
    }

    @Test("a restarted client (new epoch) numbers from 1 again: its old records are gone")
    func newEpochForgets() throws {
        try withTemporaryStore { store in
            _ = try store.introduce(client: "a", epoch: 1)
            let processor = RequestProcessor(store: store)
            let create = Request.makeDir(CreateRequest(directory: .root, name: "d", type: .directory, mode: 0o755, uid: 0, gid: 0))
            _ = try processor.process(create, for: numbered(1))
            _ = try store.introduce(client: "a", epoch: 2)
            #expect(throws: StatusCode.exists) { try processor.process(create, for: numbered(1)) }
        }
    }
}

@Suite("Clients that went away")
struct ForgottenClientTests {
    @Test("clients away longer than the retention are forgotten with their recorded replies; a connected one is kept")
    func forgottenWithTheirReplies() throws {
        try withCluster(limits: ConnectionLimits(forgetClientsAfter: .seconds(2))) { cluster in
            func numberedMakeDirs(_ client: RawProtocolClient, prefix: String, count: Int) throws {
                for i in 1...count {
                    let request = Request.makeDir(CreateRequest(directory: .root, name: "\(prefix)-\(i)", type: .directory,
                                                                mode: 0o755, uid: 0, gid: 0))
                    let id = try client.send(request, number: RequestNumber(sequence: UInt64(i), settledBelow: 1))
                    guard case .success = try client.reply(to: id) else { throw StatusCode.ioError }
                }
            }
            // NFS-mode clients hold no promises: a leaver's promise on / would make the next
            // one's mkdir wait for its lease.
            let stayer = try RawProtocolClient(port: cluster.address.port)
            try stayer.hello(design: .nfs)
            try numberedMakeDirs(stayer, prefix: "stays", count: 3)
            for client in 0..<5 {
                let leaver = try RawProtocolClient(port: cluster.address.port)
                try leaver.hello(design: .nfs)
                try numberedMakeDirs(leaver, prefix: "leaves-\(client)", count: 3)
                leaver.shutdownConnection()
            }
            // Each made its records (6 clients, 18 replies); the sweep, every half second, may
            // already have taken some of the leavers' (their setup takes about the retention).
            let store = cluster.server.store
            var after = try store.clientTableRows()
            for _ in 0..<100 where after.clients > 1 {
                Thread.sleep(forTimeInterval: 0.2)
                after = try store.clientTableRows()
                _ = stayer.keepPinging(for: 0.01)
            }
            #expect(after.clients == 1 && after.replies == 3, "\(after)")
            // The one that stayed is still answered from its record.
            let request = Request.makeDir(CreateRequest(directory: .root, name: "stays-1", type: .directory, mode: 0o755, uid: 0, gid: 0))
            let repeated = try stayer.send(request, number: RequestNumber(sequence: 1, settledBelow: 1))
            guard case .success = try stayer.reply(to: repeated) else {
                Issue.record("the repeat was not answered from the record")
                return
            }
        }
    }
}

@Suite("Last contacts of departed clients")
struct LastContactTests {
    @Test("the table stays bounded when clients keep coming, and a forgotten client's lease is never cut short")
    func boundedAndConservative() {
        let registry = ClientRegistry()
        let start = NIODeadline.now()
        for i in 0..<10_000 {
            registry.unregister("client-\(i)", connectionID: 0, lastContact: start + .milliseconds(Int64(i)))
        }
        #expect(registry.rememberedCount <= ClientRegistry.maximumRemembered)
        // client-0 was forgotten: it counts as heard from no earlier than it really was.
        #expect(registry.lastContact(of: "client-0") >= start)
        #expect(registry.lastContact(of: "client-9999") == start + .milliseconds(9999))
    }
}
