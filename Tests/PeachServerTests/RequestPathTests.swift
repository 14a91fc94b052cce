import Foundation
import PeachClient
import PeachLocalCluster
import PeachProtocol
import PeachSupport
import PeachTesting
import Testing
@testable import PeachServer

/// Protocol 3's one request path: the design declared in Hello decides callbacks; StoreData goes
/// through the request processor with its status; `--sync` says when replies wait for the disk.
@Suite("Request path")
struct RequestPathTests {
    @Test("the same FetchStatus grants a callback to an AFS-mode connection and none to an NFS-mode one")
    func designDecidesCallBacks() throws {
        try withCluster { cluster in
            try PathClient(try cluster.addClient()).writeFile("/f", "x")
            let fid = try PathClient(try cluster.addClient()).stat("/f").fid
            var expiries: [ClientDesign: UInt64] = [:]
            for design in ClientDesign.allCases {
                let raw = try RawProtocolClient(port: cluster.address.port)
                defer { raw.shutdownConnection() }
                guard case .success(.hello)? = try raw.hello(clientID: "raw-\(design)", design: design) else {
                    Issue.record("Hello failed")
                    return
                }
                guard case .success(.status(_, let expiry))? = try raw.reply(to: try raw.send(.fetchStatus(fid))) else {
                    Issue.record("FetchStatus failed")
                    return
                }
                expiries[design] = expiry
                #expect(try cluster.server.store.callBackCount(client: "raw-\(design)") == (design == .afs ? 1 : 0))
            }
            #expect(expiries[.afs]! > UInt64(Date().timeIntervalSince1970))
            #expect(expiries[.nfs] == 0)
        }
    }

    @Test("a Hello of protocol 2 gets versionMismatch, not a closed connection")
    func oldVersion() throws {
        try withCluster { cluster in
            let raw = try RawProtocolClient(port: cluster.address.port)
            defer { raw.shutdownConnection() }
            let id = try raw.send(.hello(Hello(version: 2, clientID: "old", epoch: 1)))
            guard case .failure(let code)? = try raw.reply(to: id) else {
                Issue.record("no error reply")
                return
            }
            #expect(code == .versionMismatch)
        }
    }

    @Test("StoreData applies the mode, owner and atime it carries in the store's transaction, checked like a StoreStatus")
    func storeCarriesStatus() throws {
        try withTemporaryStore { store in
            let created = try introduceTwoClientsAndCreateFile(in: store)
            let atime = Timespec(seconds: 1_600_000_000, nanoseconds: 5)
            let upload = store.newUploadPath()
            _ = FileManager.default.createFile(atPath: upload, contents: Data("abc".utf8))
            let stored = try store.store(created.fid, client: "a", uploadPath: upload, size: 3, mtime: Timespec(seconds: 7),
                                         status: StoreStatusChange(mode: 0o600, uid: 1234, gid: 99, atime: atime)).value
            #expect(stored.size == 3 && stored.mode == 0o600 && stored.uid == 1234 && stored.gid == 99)
            #expect(stored.atime == atime && stored.mtime == Timespec(seconds: 7))
            // Only root gives a file away: a user's store carrying a chown is refused, data and all.
            let bob = Identity(uid: 1234, gid: 99)
            let second = store.newUploadPath()
            _ = FileManager.default.createFile(atPath: second, contents: Data("new".utf8))
            #expect(throws: StatusCode.permissionDenied) {
                _ = try store.store(created.fid, client: .afs("b", as: bob), uploadPath: second, size: 3, mtime: .now(),
                                    status: StoreStatusChange(uid: 0))
            }
            #expect(try store.fetchStatus(created.fid, client: "a").0.dataVersion == stored.dataVersion)
        }
    }

    @Test("a StoreData with a base version is refused once the file has moved past it, and changes nothing")
    func conditionalStore() throws {
        try withTemporaryStore { store in
            let created = try introduceTwoClientsAndCreateFile(in: store)
            func upload(_ text: String) -> String {
                let path = store.newUploadPath()
                _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
                return path
            }
            let base = created.dataVersion
            let byB = try store.store(created.fid, client: "b", uploadPath: upload("from b"), size: 6, mtime: .now(),
                                      baseVersion: base).value
            #expect(byB.dataVersion == base + 1, "at its base version, a conditional store goes through")
            let stale = upload("stale a")
            #expect(throws: StatusCode.versionConflict) {
                _ = try store.store(created.fid, client: "a", uploadPath: stale, size: 7, mtime: .now(), baseVersion: base)
            }
            #expect(!FileManager.default.fileExists(atPath: stale), "the refused upload is gone")
            let now = try store.fetchStatus(created.fid, client: "a").0
            #expect(now.dataVersion == byB.dataVersion && now.size == 6)
        }
    }

    @Test("an AFS FetchStatus on a file whose promise has most of its life left grants nothing new")
    func fetchStatusKeepsHeldPromise() throws {
        try withTemporaryStore { store in
            _ = try store.introduce(client: "a", epoch: 1)
            let fid = try store.create(CreateRequest(directory: .root, name: "f", type: .regular, mode: 0o644, uid: 0, gid: 0),
                                       client: "a").value.target!.fid
            let (_, first) = try store.fetchStatus(fid, client: "a")
            // Past a second boundary, a new grant would announce a later expiry; the held one is answered.
            Thread.sleep(forTimeInterval: 1.1)
            let (_, second) = try store.fetchStatus(fid, client: "a")
            #expect(second == first)
            // Once the promise is gone (a break), FetchStatus grants a fresh one.
            _ = try store.giveUpCallBacks([fid], client: "a")
            let (_, third) = try store.fetchStatus(fid, client: "a")
            #expect(third > first)
            #expect(try store.callBackCount(client: "a") >= 1)
        }
    }

    @Test("which replies wait for the disk under each --sync")
    func syncPolicies() {
        let store = Request.storeData(.root, size: 0, mtime: .now())
        let create = Request.createFile(CreateRequest(directory: .root, name: "n", type: .regular, mode: 0o644, uid: 0, gid: 0))
        #expect(SyncPolicy.always.syncsBeforeReply(store) && SyncPolicy.always.syncsBeforeReply(create))
        #expect(SyncPolicy.onclose.syncsBeforeReply(store) && SyncPolicy.onclose.syncsBeforeReply(.commit(.root)))
        #expect(!SyncPolicy.onclose.syncsBeforeReply(create))
        #expect(!SyncPolicy.delayed.syncsBeforeReply(store) && !SyncPolicy.always.syncsBeforeReply(.fetchStatus(.root)))
    }

    @Test("concurrent callers share fsyncs, and each returns only after one that began after its call")
    func groupCommit() throws {
        let directory = try TemporaryDirectory(prefix: "peach-groupsync")
        defer { directory.remove() }
        let path = directory.path + "/log"
        _ = FileManager.default.createFile(atPath: path, contents: Data())
        let sync = try GroupSync(directory: directory.path, log: path, duration: ServerMetrics().fsyncDuration)
        let callers = 32
        DispatchQueue.concurrentPerform(iterations: callers) { _ in
            let before = sync.fsyncsStarted
            try? sync.sync()
            // The fsync that covered this call started after it.
            #expect(sync.fsyncsStarted > before)
        }
        #expect(sync.fsyncsStarted >= 1 && sync.fsyncsStarted <= callers)
        print("group commit: \(callers) concurrent callers, \(sync.fsyncsStarted) fsyncs")
    }

    @Test("a round fsyncs the data directory only after a version file was named in it")
    func directorySyncOnlyWhenNeeded() throws {
        let directory = try TemporaryDirectory(prefix: "peach-groupsync")
        defer { directory.remove() }
        let path = directory.path + "/log"
        _ = FileManager.default.createFile(atPath: path, contents: Data())
        let sync = try GroupSync(directory: directory.path, log: path, duration: ServerMetrics().fsyncDuration)
        try sync.sync()  // the first round syncs it: nothing is known of what came before
        let first = sync.directoryFsyncs
        try sync.sync()
        #expect(sync.directoryFsyncs == first)
        sync.noteDirectoryChange()
        try sync.sync()
        #expect(sync.directoryFsyncs == first + 1)
    }
}

/// Clients "a" and "b" introduced, and a file "f" in the root created by "a".
func introduceTwoClientsAndCreateFile(in store: VolumeStore) throws -> FileStatus {
    for client in ["a", "b"] { _ = try store.introduce(client: client, epoch: 1) }
    return try store.create(CreateRequest(directory: .root, name: "f", type: .regular, mode: 0o644, uid: 0, gid: 0),
                            client: "a").value.target!
}

/// A volume store in a temporary directory, removed afterwards.
func withTemporaryStore(_ body: (VolumeStore) throws -> Void) throws {
    let directory = try TemporaryDirectory(prefix: "peach-store")
    defer { directory.remove() }
    let store = try VolumeStore(root: directory.path + "/root")
    defer { store.releaseRoot() }
    try body(store)
}

/// `peach server` processes killed with SIGKILL: what each `--sync` keeps.
@Suite("Durability of --sync", .serialized,
       .enabled(if: FileManager.default.isExecutableFile(atPath: MountSupport.peachBinary), "peach is not built"))
struct SyncCrashTests {
    @Test("a crash of the server process right after replies loses nothing, at every --sync", arguments: SyncPolicy.allCases)
    func processCrash(sync: SyncPolicy) throws {
        let directory = try TemporaryDirectory(prefix: "peach-sync")
        defer { directory.remove() }
        let root = directory.path + "/root"
        let server = try ServerProcess(root: root, logDirectory: directory.path, arguments: ["--sync", sync.rawValue])
        let client = try AFSCacheManager(server: server.address, cacheDirectory: directory.path + "/cache", cacheSize: 1 << 30)
        try client.start()
        let files = PathClient(client)
        try files.makeDirectory("/d")
        for i in 0..<20 { try files.writeFile("/d/f\(i)", "content \(i)") }
        try files.rename("/d/f0", "/d/renamed")
        // The client goes first, so that its unmount-time work reaches the server before the kill.
        client.shutdown()
        server.kill()
        try server.start()
        defer { server.stop() }
        let reader = try AFSCacheManager(server: server.address, cacheDirectory: directory.path + "/cache2", cacheSize: 1 << 30)
        try reader.start()
        defer { reader.shutdown() }
        let check = PathClient(reader)
        #expect(try check.readText("/d/renamed") == "content 0")
        for i in 1..<20 { #expect(try check.readText("/d/f\(i)") == "content \(i)") }
    }
}

/// Where a request runs: a short one on the event loop that read it, unless a writer is busy.
@Suite("Requests answered on the event loop")
struct EventLoopAnswerTests {
    @Test("a chmod is answered on the event loop; while another writer holds the database it goes to the pool, and the loop stays free")
    func shortRequestsOnTheLoop() throws {
        try withCluster { cluster in
            let client = try RawProtocolClient(port: cluster.address.port)
            #expect(try client.hello().code == .ok)
            let before = cluster.server.statistics.snapshot().answeredOnEventLoop
            let chmod = try client.send(.storeStatus(.root, SetAttributes(mode: 0o750)))
            #expect(try client.reply(to: chmod).code == .ok)
            #expect(cluster.server.statistics.snapshot().answeredOnEventLoop == before + 1)
            // A long writer (a backup's snapshot, say): the next chmod waits for it on the pool,
            // and meanwhile the event loop answers a ping.
            let released = DispatchSemaphore(value: 0)
            let holding = DispatchSemaphore(value: 0)
            let gate = cluster.server.store.writerGate
            Thread.detachNewThread {
                gate.run {
                    holding.signal()
                    released.wait()
                }
            }
            holding.wait()
            let second = try client.send(.storeStatus(.root, SetAttributes(mode: 0o755)))
            let ping = try client.send(.ping)
            #expect(try client.reply(to: ping, timeout: 5).code == .ok)
            released.signal()
            #expect(try client.reply(to: second, timeout: 10).code == .ok)
            #expect(cluster.server.statistics.snapshot().answeredOnEventLoop == before + 1)
            // Giving promises up is never done on the loop: a peer decides how many rows it deletes.
            let fids = [FID](repeating: .root, count: 1000)
            let giveUp = try client.send(.giveUpCallBacks(fids))
            #expect(try client.reply(to: giveUp).code == .ok)
            #expect(cluster.server.statistics.snapshot().answeredOnEventLoop == before + 1)
        }
    }
}
