import Foundation
import NIOCore
import PeachLocalCluster
import PeachProtocol
import PeachTesting
import Testing

/// Issue 7's inputs, each sent by a raw client to a running server while a real mount uses it:
/// each gets an error reply (or its own connection closed), the server lives, and the mount
/// keeps being served. The figures printed are the mount's stat + read + write time after each.
@Suite("Real FUSE mounts: hostile inputs", .serialized,
       .enabled(if: MountSupport.unavailableReason == nil, "\(MountSupport.unavailableReason ?? "")"))
struct HostileInputMountTests {
    /// The mount's round trip: stat, read a file, store one. Returns the seconds it took.
    func mountServes(_ mount: MountedCluster.Mount, _ round: Int) throws -> Double {
        let start = Date()
        #expect(Files.size(mount.path + "/probe") == 5)
        #expect(Files.read(mount.path + "/probe") == "probe")
        #expect(try Files.write(mount.path + "/written-\(round)", "stored") == 0)
        return Date().timeIntervalSince(start)
    }

    func serverLives(_ cluster: MountedCluster) throws {
        let client = try RawProtocolClient(port: cluster.port)
        try client.hello()
        let ping = try client.send(.ping)
        #expect(try client.reply(to: ping) == .success(.pong))
    }

    @Test("WRITE, SETATTR and CREATE with values past 2^63, a sparse fill, unread fetches and READs, oversized, cut and forged frames")
    func hostileInputs() throws {
        try withMounts { cluster in
            let mount = try cluster.mount("a")
            #expect(try Files.write(mount.path + "/probe", "probe") == 0)
            #expect(try Files.write(mount.path + "/big", String(repeating: "x", count: 8 << 20)) == 0)
            let setup = try RawProtocolClient(port: cluster.port)
            try setup.hello()
            let lookup = try setup.send(.lookup(directory: .root, name: "big"))
            guard case .success(.lookup(_, let big)) = try setup.reply(to: lookup) else { Issue.record("LOOKUP failed"); return }
            let create = try setup.send(.createFile(CreateRequest(directory: .root, name: "victim", type: .regular, mode: 0o666, uid: 0, gid: 0)))
            guard case .success(.namespace(let made, _)) = try setup.reply(to: create), let victim = made.target?.fid else {
                Issue.record("CREATE failed"); return
            }

            var round = 0
            func check(_ name: String, _ attack: (RawProtocolClient) throws -> Void) throws {
                round += 1
                let raw = try RawProtocolClient(port: cluster.port)
                try raw.hello()
                try attack(raw)
                try serverLives(cluster)
                let seconds = try mountServes(mount, round)
                print("hostile input '\(name)': mount's stat+read+store afterwards \(Int(seconds * 1000)) ms")
            }
            func expectReply(_ raw: RawProtocolClient, _ request: Request, _ status: StatusCode) throws {
                let id = try raw.send(request)
                #expect(try raw.reply(to: id) == .failure(status), "\(request.opcode.name)")
            }
            try check("WRITE at 2^63") { try expectReply($0, .write(victim, offset: 1 << 63, data: [1]), .fileTooLarge) }
            try check("SETATTR size 2^63") { try expectReply($0, .storeStatus(victim, SetAttributes(size: 1 << 63)), .fileTooLarge) }
            try check("CREATE device rdev 2^63") {
                try expectReply($0, .createFile(CreateRequest(directory: .root, name: "dev", type: .blockDevice, mode: 0o600, uid: 0, gid: 0,
                                                          rdev: 1 << 63)), .invalidArgument)
            }
            try check("WRITE 1 byte at 2^40, SETATTR size") {
                try expectReply($0, .write(victim, offset: 1 << 40, data: [1]), .fileTooLarge)
                try expectReply($0, .storeStatus(victim, SetAttributes(size: (1 << 40) + 1)), .fileTooLarge)
            }
            try check("8 unread FetchData of an 8 MiB file") { raw in
                for _ in 0..<8 { try raw.send(.fetchData(big.fid)) }
            }
            try check("2000 unread READs of 1 MiB") { raw in
                for _ in 0..<2000 { try raw.send(.read(big.fid, offset: 0, count: 1 << 20)) }
            }
            try check("50 connections each sending most of a 4 MiB frame") { _ in
                for _ in 0..<50 {
                    let flood = try RawProtocolClient(port: cluster.port)
                    var header = ByteBuffer()
                    header.writeInteger(UInt32((4 << 20) - 100))
                    try? flood.send(bytes: Array(buffer: header) + [UInt8](repeating: 0, count: 1 << 20))
                    #expect(flood.isClosedByServer(within: 5))
                }
            }
            try check("a truncated frame") { raw in
                try raw.send(bytes: [0, 0, 0, 100, 1, 0])
            }
            try check("an acknowledgement with another opcode") { raw in
                try raw.send(Frame(kind: .pushAck, id: 1, opcode: 9, body: ByteBuffer()))
            }
        }
    }
}
