import Foundation
import NIOCore
import PeachClient
import PeachLocalCluster
import PeachProtocol
import PeachSupport
import PeachTesting
import Testing
@testable import PeachServer

/// Requests that once crashed the server, sent over a real socket to a running server: each gets
/// an error reply (or its connection closed), the server lives, and a normal client is still served.
@Suite("Hostile requests")
struct HostileRequestTests {
    /// A normal client's round trip: create, store, read back.
    func normalClientWorks(_ client: PathClient, name: String) throws {
        try client.writeFile("/" + name, "ok")
        #expect(try client.readText("/" + name) == "ok")
    }

    func newFile(_ raw: RawProtocolClient, _ name: String) throws -> FID {
        let id = try raw.send(.createFile(CreateRequest(directory: .root, name: name, type: .regular, mode: 0o644, uid: 0, gid: 0)))
        guard case .success(.namespace(let change, _)) = try raw.reply(to: id), let fid = change.target?.fid else {
            throw RawProtocolClient.Failure(description: "CREATE failed")
        }
        return fid
    }

    @Test("WRITE at 2^63, SETATTR to 2^63 and CREATE of a device 2^63: error replies, the server lives")
    func trapInputs() throws {
        try withCluster { cluster in
            let client = PathClient(try cluster.addClient())
            let raw = try RawProtocolClient(port: cluster.address.port)
            try raw.hello()
            let fid = try newFile(raw, "victim")

            let write = try raw.send(.write(fid, offset: 1 << 63, data: [1]))
            #expect(try raw.reply(to: write) == .failure(.fileTooLarge))
            let writeMax = try raw.send(.write(fid, offset: UInt64.max, data: [1, 2]))
            #expect(try raw.reply(to: writeMax) == .failure(.fileTooLarge))
            let setattr = try raw.send(.storeStatus(fid, SetAttributes(size: 1 << 63)))
            #expect(try raw.reply(to: setattr) == .failure(.fileTooLarge))
            let device = try raw.send(.createFile(CreateRequest(directory: .root, name: "dev", type: .blockDevice, mode: 0o600,
                                                            uid: 0, gid: 0, rdev: 1 << 63)))
            #expect(try raw.reply(to: device) == .failure(.invalidArgument))
            let store = try raw.send(.storeData(fid, size: UInt64.max, mtime: .now()))
            try raw.send(Frame(kind: .data, flags: Frame.flagLastChunk, id: store, opcode: Opcode.storeData.rawValue,
                               body: ByteBuffer(bytes: [1])))
            #expect(try raw.reply(to: store) == .failure(.fileTooLarge))

            let ping = try raw.send(.ping)
            #expect(try raw.reply(to: ping) == .success(.pong))
            try normalClientWorks(client, name: "after")
        }
    }

    @Test("WRITE of 1 byte at 2^40 - 1 then SETATTR of the size does not allocate the hole")
    func sparseFill() throws {
        try withCluster { cluster in
            let raw = try RawProtocolClient(port: cluster.address.port)
            try raw.hello()
            let fid = try newFile(raw, "sparse")
            let write = try raw.send(.write(fid, offset: (1 << 40) - 1, data: [1]))
            guard case .success = try raw.reply(to: write) else { Issue.record("WRITE below the limit failed"); return }
            let setattr = try raw.send(.storeStatus(fid, SetAttributes(size: 1 << 39)))
            guard case .success(.status(let status, _)) = try raw.reply(to: setattr) else { Issue.record("SETATTR failed"); return }
            #expect(status.size == 1 << 39)
            let used = try shell("du -s --block-size=1 '\(cluster.directory.path)/server/data' | cut -f1").output
            #expect((Int(used.trimmingCharacters(in: .whitespacesAndNewlines)) ?? .max) < 16 << 20)
        }
    }

    @Test("an acknowledgement must carry its push's opcode and nothing else")
    func forgedAcknowledgement() throws {
        try withCluster(callBackTimeout: 30) { cluster in
            let writer = PathClient(try cluster.addClient())
            let raw = try RawProtocolClient(port: cluster.address.port)
            try raw.hello()
            let fid = try newFile(raw, "watched")
            let fetch = try raw.send(.fetchStatus(fid))
            guard case .success = try raw.reply(to: fetch) else { Issue.record("FetchStatus failed"); return }
            // A change by another client breaks raw's callback; raw answers with a wrong opcode.
            let done = DispatchSemaphore(value: 0)
            DispatchQueue.global().async {
                try? writer.writeFile("/watched", "changed")
                done.signal()
            }
            var push: Frame?
            while let frame = try raw.receiveFrame(timeout: 10) {
                if frame.kind == .push { push = frame; break }
            }
            let pushFrame = try #require(push)
            try raw.send(Frame(kind: .pushAck, id: pushFrame.id, opcode: pushFrame.opcode &+ 7, body: ByteBuffer()))
            #expect(raw.isClosedByServer(within: 5))
            #expect(done.wait(timeout: .now() + 20) == .success)
        }
    }

    @Test("a local user who claims to be root gets its own rights only: no reading, overwriting, setuid or root-owned files")
    func anyoneIsNotAnyone() throws {
        try withCluster { cluster in
            let admin = try RawProtocolClient(port: cluster.address.port)
            try admin.hello()
            let secret = try newFile(admin, "secret")
            let chown = try admin.send(.storeStatus(secret, SetAttributes(mode: 0o600, uid: 1000, gid: 1000)))
            guard case .success = try admin.reply(to: chown) else { Issue.record("chown failed"); return }
            let mkdir = try admin.send(.makeDir(CreateRequest(directory: .root, name: "public", type: .directory, mode: 0o777, uid: 0, gid: 0)))
            guard case .success(.namespace(let made, _)) = try admin.reply(to: mkdir), let publicDir = made.target?.fid else {
                Issue.record("mkdir failed"); return
            }

            let mallory = try RawProtocolClient(port: cluster.address.port, owner: 1001)
            mallory.credential = .root  // a lie: the socket belongs to uid 1001
            try mallory.hello()
            let read = try mallory.send(.fetchData(secret))
            #expect(try mallory.reply(to: read) == .failure(.accessDenied))
            let write = try mallory.send(.write(secret, offset: 0, data: Array("owned".utf8)))
            #expect(try mallory.reply(to: write) == .failure(.accessDenied))
            let setuid = try mallory.send(.storeStatus(secret, SetAttributes(mode: 0o4777)))
            #expect(try mallory.reply(to: setuid) == .failure(.permissionDenied))
            let rootFile = try mallory.send(.createFile(CreateRequest(directory: .root, name: "mine", type: .regular, mode: 0o644, uid: 0, gid: 0)))
            #expect(try mallory.reply(to: rootFile) == .failure(.accessDenied))
            let delete = try mallory.send(.removeFile(directory: .root, name: "secret"))
            #expect(try mallory.reply(to: delete) == .failure(.accessDenied))
            // Where it may create, the file is its own, not root's.
            let own = try mallory.send(.createFile(CreateRequest(directory: publicDir, name: "mine", type: .regular, mode: 0o644, uid: 0, gid: 0)))
            guard case .success(.namespace(let created, _)) = try mallory.reply(to: own) else { Issue.record("create failed"); return }
            #expect(created.target?.uid == 1001)
        }
    }

    @Test("Hello with an epoch of 2^63 (it trapped the server; found by the fuzzer) is answered, and the client is served")
    func helloEpoch() throws {
        try withCluster { cluster in
            let raw = try RawProtocolClient(port: cluster.address.port)
            let hello = try raw.send(.hello(Hello(clientID: "epoch-client", epoch: 1 << 63)))
            guard case .success(.hello) = try raw.reply(to: hello) else { Issue.record("Hello failed"); return }
            let again = try RawProtocolClient(port: cluster.address.port)
            let second = try again.send(.hello(Hello(clientID: "epoch-client", epoch: UInt64.max)))
            guard case .success(.hello) = try again.reply(to: second) else { Issue.record("Hello failed"); return }
            let ping = try again.send(.ping)
            #expect(try again.reply(to: ping) == .success(.pong))
        }
    }
}
