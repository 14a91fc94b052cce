import Foundation
import NIOCore
import PeachProtocol
import PeachServer

/// The server's request processor against a real `VolumeStore` in a temporary directory.
///
/// An input is a stream of frames, as a connection would carry them. Each request frame is decoded
/// with its credential (what does not decode is skipped) and answered as `ConnectionHandler`
/// would: Hello introduces the client, StoreData collects the data frames of its id and stores
/// them, every other request goes through `RequestProcessor.process`. The frame's flags pick who
/// sends it (Hello introduces its own client id):
///
/// - bit 0: the connection is the local root (credentials honoured) or machine "fuzz" (root squashed);
/// - bit 1: client "a" or client "b";
/// - bit 2: machine "fuzz" may only read.
///
/// Each input gets a fresh directory of its own (mode 777, made by the harness in the root), so
/// that names do not collide with what earlier inputs left in the store. A FID whose volume is
/// `0xFFFF_FFFF` stands for that directory (n = 0) or the n-th file this input created or looked
/// up (n = its vnode, modulo how many there are), so that short inputs reach real files.
/// StatusCode and protocol errors are fine; a trap is a bug.
public final class RequestFuzzTarget: @unchecked Sendable {
    /// The marker volume of a FID that names a file the input met before.
    public static let recentVolume: UInt32 = 0xFFFF_FFFF
    public static let clients = ["a", "b"]

    /// The store is made again after this many inputs, to keep the volume small.
    public let inputsPerStore: Int
    private let root: String
    private var store: VolumeStore!
    private var processor: RequestProcessor!
    private var inputs = 0
    private var generation = 0
    private let policy = IdentityPolicy(readOnlyClients: ["fuzz-read-only"])
    /// Sees each request processed (after FID mapping) and its outcome: for tests and debugging.
    public var trace: ((Request, Result<Reply, any Error>) -> Void)?

    /// - Parameter root: a directory of its own for the stores (made, and emptied by `remove()`).
    public init(root: String, inputsPerStore: Int = 500) throws {
        self.root = root
        self.inputsPerStore = inputsPerStore
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        try openStore()
    }

    /// One per fuzzing process, under `$PEACH_FUZZ_DIR` or the temporary directory, removed at exit.
    public static let shared: RequestFuzzTarget = {
        let base = ProcessInfo.processInfo.environment["PEACH_FUZZ_DIR"] ?? NSTemporaryDirectory()
        let target = try! RequestFuzzTarget(root: base + "/peach-fuzz-\(getpid())")
        atexit { RequestFuzzTarget.shared.remove() }
        return target
    }()

    private func openStore() throws {
        let previous = root + "/store-\(generation)"
        store?.releaseRoot()
        store = nil
        processor = nil
        try? FileManager.default.removeItem(atPath: previous)
        generation += 1
        let store = try VolumeStore(root: root + "/store-\(generation)")
        for client in Self.clients { _ = try store.introduce(client: client, epoch: 1) }
        self.store = store
        processor = RequestProcessor(store: store)
    }

    /// Deletes every store this target made.
    public func remove() {
        store?.releaseRoot()
        store = nil
        processor = nil
        try? FileManager.default.removeItem(atPath: root)
    }

    private struct Upload {
        var request: Request
        var size: UInt64
        var requester: Requester
        var data: [UInt8] = []
    }

    /// Runs one input.
    public func run(_ bytes: [UInt8]) {
        inputs += 1
        if inputs % inputsPerStore == 0 { try! openStore() }
        var buffer = ByteBuffer(bytes: bytes)
        let home = try? store.create(CreateRequest(directory: .root, name: "input-\(inputs)", type: .directory, mode: 0o777,
                                                   uid: 0, gid: 0), client: .client("fuzz-harness", design: .nfs))
        var recent: [FID] = [home?.value.target?.fid ?? .root]
        var uploads: [UInt32: Upload] = [:]
        for _ in 0..<FuzzEntry.maximumFrames {
            guard let frame = try? FrameDecoder.decodeFrame(from: &buffer) else { break }
            let client = Self.clients[Int(frame.flags >> 1) & 1]
            switch frame.kind {
            case .request:
                guard let (credential, decoded) = try? RequestCodec.decodeWithCredential(opcode: frame.opcode, body: frame.body) else {
                    continue
                }
                let principal: Principal = frame.flags & 1 == 0 ? .localRoot
                    : .machine(frame.flags & 4 == 0 ? "fuzz" : "fuzz-read-only")
                // The design the connection declared: flag 8 is an NFS-mode connection.
                let requester = Requester.client(client, design: frame.flags & 8 == 0 ? .afs : .nfs,
                                                 as: policy.identity(for: credential, from: principal))
                let request = Self.mapFIDs(decoded) { fid in
                    fid.volume == Self.recentVolume ? recent[Int(fid.vnode % UInt64(recent.count))] : fid
                }
                switch request {
                case .hello(let hello):
                    // As ConnectionHandler.handshake: the version and the client id are checked first.
                    guard hello.version == peachProtocolVersion, Self.isValidClientID(hello.clientID) else { continue }
                    do {
                        _ = try store.introduce(client: hello.clientID, epoch: hello.epoch)
                        trace?(request, .success(.pong))
                    } catch {
                        trace?(request, .failure(error))
                    }
                case .storeData(_, let size, _, _, _):
                    uploads[frame.id] = Upload(request: request, size: size, requester: requester)
                default:
                    let outcome: Outcome
                    do {
                        outcome = try processor.process(request, for: requester)
                        trace?(request, .success(outcome.reply))
                    } catch {
                        trace?(request, .failure(error))
                        continue
                    }
                    remember(outcome.reply, in: &recent)
                    // What the connection would send: the reply, then the content.
                    var encoded = ByteBuffer()
                    ReplyCodec.encode(outcome.reply, into: &encoded)
                    if case .file(let handle, _) = outcome.content { try? handle.close() }
                }
            case .data:
                guard var upload = uploads[frame.id] else { continue }
                upload.data += frame.body.readableBytesView
                // The server closes a connection that sends more than it announced.
                guard UInt64(upload.data.count) <= upload.size else { return }
                uploads[frame.id] = frame.isLastChunk ? nil : upload
                if frame.isLastChunk { finish(upload, recent: &recent) }
            case .reply, .push, .pushAck:
                continue
            }
        }
    }

    /// The last data frame of a StoreData is in: store it as `ConnectionHandler.finishUpload` does.
    /// A size over the limit goes to the store too, which must refuse it by itself.
    private func finish(_ upload: Upload, recent: inout [FID]) {
        guard upload.size == UInt64(upload.data.count) || upload.size > store.limits.maximumFileSize else { return }
        // Both forms the connection hands over: a small store's bytes, or a file (every other
        // store, and every fourth small one, so a file that ends up inline is reached too).
        let content: VolumeStore.UploadedContent
        if upload.data.count <= store.inlineMaximum && upload.data.count % 4 != 3 {
            content = .bytes(upload.data)
        } else {
            let path = store.newUploadPath()
            guard FileManager.default.createFile(atPath: path, contents: Data(upload.data)) else { return }
            content = .file(path)
        }
        do {
            let outcome = try processor.process(upload.request, for: upload.requester, upload: content)
            trace?(upload.request, .success(outcome.reply))
            var encoded = ByteBuffer()
            ReplyCodec.encode(outcome.reply, into: &encoded)
        } catch {
            trace?(upload.request, .failure(error))
        }
        if case .file(let path) = content { try? FileManager.default.removeItem(atPath: path) }
    }

    private func remember(_ reply: Reply, in recent: inout [FID]) {
        switch reply {
        case .namespace(let change, _):
            if let target = change.target { recent.append(target.fid) }
        case .lookup(_, let object):
            recent.append(object.fid)
        default:
            break
        }
    }

    /// ConnectionHandler.isValidClientID: a printable token of at most 64 bytes.
    static func isValidClientID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 64 && id.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7f }
    }

    /// `request` with every FID in it replaced by `f(fid)`.
    static func mapFIDs(_ request: Request, _ f: (FID) -> FID) -> Request {
        func c(_ r: CreateRequest) -> CreateRequest {
            var r = r
            r.directory = f(r.directory)
            return r
        }
        switch request {
        case .hello, .ping, .getVolumeStatus, .giveUpAllCallBacks, .admin: return request
        case .fetchStatus(let fid): return .fetchStatus(f(fid))
        case .bulkStatus(let fids): return .bulkStatus(fids.map(f))
        case .fetchData(let fid, let range): return .fetchData(f(fid), range: range)
        case .storeData(let fid, let size, let mtime, let status, let base):
            return .storeData(f(fid), size: size, mtime: mtime, status: status, baseVersion: base)
        case .storeStatus(let fid, let a): return .storeStatus(f(fid), a)
        case .createFile(let r): return .createFile(c(r))
        case .makeDir(let r): return .makeDir(c(r))
        case .symlink(let r): return .symlink(c(r))
        case .link(let d, let n, let t): return .link(directory: f(d), name: n, target: f(t))
        case .removeFile(let d, let n): return .removeFile(directory: f(d), name: n)
        case .removeDir(let d, let n): return .removeDir(directory: f(d), name: n)
        case .rename(let fd, let fn, let td, let tn): return .rename(fromDirectory: f(fd), fromName: fn, toDirectory: f(td), toName: tn)
        case .giveUpCallBacks(let fids): return .giveUpCallBacks(fids.map(f))
        case .lookup(let d, let n): return .lookup(directory: f(d), name: n)
        case .read(let fid, let offset, let count): return .read(f(fid), offset: offset, count: count)
        case .write(let fid, let offset, let data): return .write(f(fid), offset: offset, data: data)
        case .commit(let fid): return .commit(f(fid))
        case .readDir(let fid, let cookie, let count): return .readDir(f(fid), cookie: cookie, count: count)
        case .readlink(let fid): return .readlink(f(fid))
        }
    }
}

extension FuzzEntry {
    /// The request processor on the process's store (`RequestFuzzTarget.shared`).
    public static func requestInput(_ bytes: [UInt8]) {
        RequestFuzzTarget.shared.run(bytes)
    }
}
