import NIOCore
import Testing
@testable import PeachProtocol

let sampleFID = FID(volume: 1, vnode: 42, unique: 7)
let sampleStatus = FileStatus(
    fid: sampleFID, type: .regular, mode: 0o644, uid: 1000, gid: 100, size: 12345, linkCount: 2, dataVersion: 9,
    atime: Timespec(seconds: 1_700_000_000, nanoseconds: 1), mtime: Timespec(seconds: 1_700_000_001, nanoseconds: 999_999_999),
    ctime: Timespec(seconds: -5, nanoseconds: 0), rdev: 0)

let everyRequest: [Request] = [
    .hello(Hello(clientID: "3F2504E0-4F89-11D3-9A0C-0305E82C3301", epoch: 3)),
    .hello(Hello(clientID: "nfs-client", epoch: 1, design: .nfs)),
    .ping,
    .fetchStatus(sampleFID),
    .bulkStatus([sampleFID, .root]),
    .bulkStatus([]),
    .fetchData(sampleFID),
    .storeData(sampleFID, size: 1 << 40, mtime: Timespec(seconds: 1, nanoseconds: 2)),
    .storeData(sampleFID, size: 0, mtime: Timespec(seconds: 1), status: StoreStatusChange(mode: 0o600, uid: 7, gid: nil)),
    .storeData(sampleFID, size: 5, mtime: Timespec(seconds: 1), baseVersion: 42),
    .storeStatus(sampleFID, SetAttributes(mode: 0o4755, uid: 1, gid: nil, size: 0, atime: .now, mtime: .at(Timespec(seconds: 3)))),
    .storeStatus(sampleFID, SetAttributes()),
    .createFile(CreateRequest(directory: .root, name: "häagen dazs.txt", type: .regular, mode: 0o600, uid: 5, gid: 6)),
    .createFile(CreateRequest(directory: .root, name: "pipe", type: .fifo, mode: 0o600, uid: 5, gid: 6, rdev: 0)),
    .makeDir(CreateRequest(directory: .root, name: "d", type: .directory, mode: 0o755, uid: 0, gid: 0)),
    .symlink(CreateRequest(directory: .root, name: "l", type: .symlink, mode: 0o777, uid: 0, gid: 0, symlinkTarget: "../x")),
    .link(directory: .root, name: "hard", target: sampleFID),
    .removeFile(directory: .root, name: "a"),
    .removeDir(directory: .root, name: "d"),
    .rename(fromDirectory: .root, fromName: "a", toDirectory: sampleFID, toName: "b"),
    .giveUpCallBacks([sampleFID]),
    .getVolumeStatus,
    .giveUpAllCallBacks,
    .lookup(directory: .root, name: "name"),
    .read(sampleFID, offset: 65536, count: 65536),
    .write(sampleFID, offset: 3, data: [1, 2, 3]),
    .write(sampleFID, offset: 0, data: []),
    .commit(sampleFID),
    .readDir(.root, cookie: 2, count: 100),
    .readlink(sampleFID),
    .admin(.clients),
    .admin(.callBacks(path: "/src", client: "")),
    .admin(.callBacks(path: "", client: "A-B")),
    .admin(.statistics),
    .admin(.backup),
]

let everyReply: [(Opcode, Reply)] = [
    (.hello, .hello(HelloReply(serverEpoch: 4, callBacksLost: true))),
    (.ping, .pong),
    (.fetchStatus, .status(sampleStatus, callBackExpiry: 99)),
    (.storeStatus, .status(sampleStatus, callBackExpiry: 0)),
    (.storeData, .status(sampleStatus, callBackExpiry: 1)),
    (.bulkStatus, .bulkStatus([.status(sampleStatus), .error(.stale)], callBackExpiry: 7)),
    (.fetchData, .fetchData(sampleStatus, callBackExpiry: 8)),
    (.createFile, .namespace(NamespaceChange(directory: sampleStatus, target: sampleStatus), callBackExpiry: 2)),
    (.removeFile, .namespace(NamespaceChange(directory: sampleStatus, target: nil), callBackExpiry: 2)),
    (.rename, .namespace(NamespaceChange(directory: sampleStatus, target: sampleStatus, otherDirectory: sampleStatus), callBackExpiry: 2)),
    (.giveUpCallBacks, .done),
    (.giveUpAllCallBacks, .done),
    (.getVolumeStatus, .volumeStatus(VolumeStatus(blockSize: 4096, totalBlocks: 10, freeBlocks: 5, totalFiles: 100, freeFiles: 50))),
    (.commit, .status(sampleStatus, callBackExpiry: 0)),
    (.lookup, .lookup(directory: sampleStatus, object: sampleStatus)),
    (.read, .read(sampleStatus, data: [9, 8, 7])),
    (.read, .read(sampleStatus, data: [])),
    (.write, .write(before: 4, sampleStatus)),
    (.readDir, .readDir(sampleStatus, entries: [DirectoryEntry(name: "x", fid: sampleFID, type: .fifo)], endOfListing: true)),
    (.readDir, .readDir(sampleStatus, entries: [], endOfListing: false)),
    (.readlink, .readlink(sampleStatus, target: "../t")),
    (.admin, .adminReport(Array("{}".utf8))),
    (.admin, .backup(size: 1 << 40)),
]

@Suite("Message codec round trips")
struct MessageRoundTripTests {
    @Test("every request survives encode → decode", arguments: everyRequest)
    func requestRoundTrip(_ request: Request) throws {
        var buffer = ByteBuffer()
        RequestCodec.encode(request, into: &buffer)
        #expect(try RequestCodec.decode(opcode: request.opcode.rawValue, body: buffer) == request)
    }

    @Test("every reply survives encode → decode")
    func replyRoundTrip() throws {
        for (opcode, reply) in everyReply {
            var buffer = ByteBuffer()
            ReplyCodec.encode(reply, into: &buffer)
            #expect(try ReplyCodec.decode(opcode: opcode.rawValue, body: buffer) == .success(reply))
        }
    }

    @Test("an error status decodes as a failure")
    func errorReply() throws {
        var buffer = ByteBuffer()
        ReplyCodec.encodeError(.notEmpty, into: &buffer)
        #expect(try ReplyCodec.decode(opcode: Opcode.removeDir.rawValue, body: buffer) == .failure(.notEmpty))
    }

    @Test("pushes round-trip")
    func pushRoundTrip() throws {
        for push in [Push.callBack([sampleFID, .root], reason: .store), .initCallBackState] {
            var buffer = ByteBuffer()
            PushCodec.encode(push, into: &buffer)
            #expect(try PushCodec.decode(opcode: push.opcode, body: buffer) == push)
        }
    }

    @Test("directory listings round-trip")
    func listingRoundTrip() throws {
        let entries = [DirectoryEntry(name: "a", fid: sampleFID, type: .regular),
                       DirectoryEntry(name: String(repeating: "x", count: 255), fid: .root, type: .directory)]
        #expect(try DirectoryListingCodec.decode(DirectoryListingCodec.encode(entries)) == entries)
        #expect(try DirectoryListingCodec.decode(DirectoryListingCodec.encode([])) == [])
    }
}
