import Foundation
import PeachProtocol
import PeachSupport
import PeachTesting
import Testing
@testable import PeachServer

/// A broken promise stays in the callback table until its client acknowledges the break, so a
/// server that stops (or is killed) before the acknowledgement still knows of it when it starts
/// again: the client is told at its next Hello, and the next change to the file waits for it.
@Suite("Breaks not yet acknowledged")
struct UnsettledBreakTests {
    /// A store at `root` where "holder" holds a promise on file /f, which "writer" then changes;
    /// returns the file and the breaks the change made.
    func brokenPromise(root: String) throws -> (FID, [String: [FID]]) {
        let store = try VolumeStore(root: root)
        defer { store.releaseRoot() }
        for client in ["holder", "writer", "other"] { _ = try store.introduce(client: client, epoch: 1) }
        let file = try store.create(CreateRequest(directory: .root, name: "f", type: .regular, mode: 0o644, uid: 0, gid: 0),
                                    client: "writer").value.target!
        _ = try store.fetchStatus(file.fid, client: .afs("holder"))
        let change = try store.setAttributes(file.fid, SetAttributes(mode: 0o600), client: .afs("writer"))
        return (file.fid, change.breaks)
    }

    @Test("a break unacknowledged when the server stopped: after a restart the holder's Hello is told its promises are lost")
    func unsettledAcrossRestart() throws {
        let directory = try TemporaryDirectory(prefix: "peach-breaks")
        defer { directory.remove() }
        let root = directory.path + "/server"
        let (fid, breaks) = try brokenPromise(root: root)
        #expect(breaks == ["holder": [fid]])
        let store = try VolumeStore(root: root)
        defer { store.releaseRoot() }
        // Until it says Hello, every change to the file still waits for it (it may trust its copy
        // until its lease runs out), and a repeated request's reply too.
        let next = try store.setAttributes(fid, SetAttributes(mode: 0o640), client: .afs("other"))
        #expect(next.breaks["holder"] == [fid])
        #expect(try store.unsettledBreaks(except: "writer") == ["holder": [fid]])
        #expect(try store.introduce(client: "holder", epoch: 1))
        #expect(try store.unsettledBreaks(except: "writer").isEmpty)
        #expect(try !store.introduce(client: "holder", epoch: 1))
    }

    @Test("an acknowledged break is settled: the holder's next Hello keeps its other promises")
    func settledBreak() throws {
        let directory = try TemporaryDirectory(prefix: "peach-breaks")
        defer { directory.remove() }
        let root = directory.path + "/server"
        let (fid, _) = try brokenPromise(root: root)
        let store = try VolumeStore(root: root)
        defer { store.releaseRoot() }
        try store.settleBreaks(client: "holder", fids: [fid])
        #expect(try store.unsettledBreaks(except: "writer").isEmpty)
        #expect(try !store.introduce(client: "holder", epoch: 1))
        // A new promise after the break is a live one: it is not settled away.
        _ = try store.fetchStatus(fid, client: .afs("holder"))
        try store.settleBreaks(client: "holder", fids: [fid])
        #expect(try store.callBackCount(client: "holder") == 1)
    }
}
