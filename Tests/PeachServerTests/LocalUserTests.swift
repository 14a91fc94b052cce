import Foundation
import NIOCore
import PeachClient
import PeachLocalCluster
import PeachProtocol
import PeachSupport
import PeachTesting
import Testing
@testable import PeachServer

/// A second local user on the server's machine, speaking the protocol by hand over a socket it
/// owns (uid 1000): it cannot take over another principal's client id, pass for root with a
/// closed socket, escape `--read-only-clients`, or reach a file through a FID it guessed.
@Suite("A second local user")
struct LocalUserTests {
    static let mallory: uid_t = 1000

    /// A file of root's inside a 0700 directory, made over root's own connection.
    func privateFile(_ root: RawProtocolClient, content: String) throws -> FID {
        let mkdir = try root.send(.makeDir(CreateRequest(directory: .root, name: "private", type: .directory, mode: 0o700, uid: 0, gid: 0)))
        guard case .success(.namespace(let made, _)) = try root.reply(to: mkdir), let directory = made.target?.fid else {
            throw RawProtocolClient.Failure(description: "mkdir failed")
        }
        let create = try root.send(.createFile(CreateRequest(directory: directory, name: "report.txt", type: .regular, mode: 0o644, uid: 0, gid: 0)))
        guard case .success(.namespace(let created, _)) = try root.reply(to: create), let file = created.target?.fid else {
            throw RawProtocolClient.Failure(description: "create failed")
        }
        let write = try root.send(.write(file, offset: 0, data: Array(content.utf8)))
        guard case .success = try root.reply(to: write) else { throw RawProtocolClient.Failure(description: "write failed") }
        return file
    }

    @Test("a client id belongs to the principal that introduced it: another local user is refused it, its owner is not")
    func clientIDBelongsToItsPrincipal() throws {
        try withCluster { cluster in
            let root = try RawProtocolClient(port: cluster.address.port)
            #expect(try root.hello(clientID: "roots-mount").code == .ok)
            let mallory = try RawProtocolClient(port: cluster.address.port, owner: Self.mallory)
            #expect(try mallory.hello(clientID: "roots-mount").code == .accessDenied)
            // Without the id it has no client at all: no request of it is served under root's id.
            let create = try mallory.send(.createFile(CreateRequest(directory: .root, name: "bait", type: .regular, mode: 0o644, uid: 0, gid: 0)))
            #expect(try mallory.reply(to: create).code == .notIntroduced)
            // Its own id it may have.
            #expect(try mallory.hello(clientID: "mallorys-own").code == .ok)
            // Root's mount reconnecting with its id is still welcome.
            let again = try RawProtocolClient(port: cluster.address.port)
            #expect(try again.hello(clientID: "roots-mount").code == .ok)
        }
    }

    @Test("a real mount's id, copied by another local user, is refused; the mount keeps its promises and is served")
    func mountIDCannotBeTaken() throws {
        try withCluster { cluster in
            let victim = try cluster.addClient(named: "victim")
            let files = PathClient(victim)
            try files.writeFile("/shared", "v1")
            let id = try #require(try readClientID(cacheDirectory: cluster.directory.path + "/cache-victim"))
            let mallory = try RawProtocolClient(port: cluster.address.port, owner: Self.mallory)
            #expect(try mallory.hello(clientID: id).code == .accessDenied)
            #expect(try files.readText("/shared") == "v1")
            try files.writeFile("/shared", "v2")
            #expect(try files.readText("/shared") == "v2")
        }
    }

    /// The client id a cache manager keeps in its index (what the attack copied).
    func readClientID(cacheDirectory: String) throws -> String? {
        let output = try shell("python3 -c \"import sqlite3; print(sqlite3.connect('file:\(cacheDirectory)/index.sqlite?mode=ro', uri=True)"
                               + ".execute(\\\"SELECT value FROM identity WHERE key = 'clientID'\\\").fetchone()[0])\"").output
        let id = output.trimmingCharacters(in: .whitespacesAndNewlines)
        return id.isEmpty ? nil : id
    }

    @Test("a cache directory is private to its mount: 0700, and its index 0600")
    func cacheDirectoryIsPrivate() throws {
        try withCluster { cluster in
            let directory = cluster.directory.path + "/cache-open"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o755])
            let client = try cluster.addClient(named: "open")
            try PathClient(client).writeFile("/f", "x")
            var st = stat()
            #expect(stat(directory, &st) == 0 && st.st_mode & 0o777 == 0o700)
            #expect(stat(directory + "/index.sqlite", &st) == 0 && st.st_mode & 0o777 == 0o600)
        }
    }

    @Test("a loopback socket its owner has closed is nobody's: the kernel's time-wait entry says uid 0, and is not believed")
    func closedSocketIsNobodys() throws {
        try withCluster { cluster in
            var mallory: RawProtocolClient? = try RawProtocolClient(port: cluster.address.port, owner: Self.mallory)
            let peer = try SocketAddress(ipAddress: "127.0.0.1", port: mallory!.localPort)
            let local = try SocketAddress(ipAddress: "127.0.0.1", port: cluster.address.port)
            guard case .localUser(let user)? = LoopbackPeer.principal(peer: peer, local: local) else {
                Issue.record("an open socket of uid 1000 was not recognised"); return
            }
            #expect(user.uid == Self.mallory)
            mallory = nil  // closed: the kernel keeps a FIN_WAIT2 or TIME_WAIT entry it prints as uid 0
            #expect(eventually(within: 10) { LoopbackPeer.owner(of: peer, connectedTo: local) == nil })
            #expect(LoopbackPeer.principal(peer: peer, local: local) == nil)
            #expect(throws: StatusCode.accessDenied) { try LoopbackPeer.requirePrincipal(peer: peer, local: local) }
        }
    }

    @Test("--read-only-clients localhost holds for every local user, not only root")
    func readOnlyLocalhost() throws {
        try withCluster(identityPolicy: IdentityPolicy(readOnlyClients: ["localhost"])) { cluster in
            let mallory = try RawProtocolClient(port: cluster.address.port, owner: Self.mallory)
            try mallory.hello()
            // /tmp-like: anyone may create in a 1777 directory, so only the read-only rule refuses.
            let store = cluster.server.store
            _ = try store.setAttributes(.root, SetAttributes(mode: 0o1777), client: .stateless("admin"))
            let create = try mallory.send(.createFile(CreateRequest(directory: .root, name: "mine", type: .regular, mode: 0o644, uid: 0, gid: 0)))
            #expect(try mallory.reply(to: create).code == .readOnly)
        }
    }

    @Test("a FID is not guessable: another user cannot read or link root's file in a 0700 directory by its vnode number")
    func guessedFIDIsStale() throws {
        try withCluster { cluster in
            let root = try RawProtocolClient(port: cluster.address.port)
            try root.hello()
            let secret = try privateFile(root, content: "ROOT-SECRET")
            #expect(secret.unique != 1)
            let mallory = try RawProtocolClient(port: cluster.address.port, owner: Self.mallory)
            try mallory.hello()
            // What the attack did: the vnode numbers count up, and the uniquifier was always 1.
            for guess in [FID(vnode: secret.vnode, unique: 1), FID(vnode: secret.vnode, unique: 2)] {
                let read = try mallory.send(.read(guess, offset: 0, count: 100))
                #expect(try mallory.reply(to: read).code == .stale)
                let fetch = try mallory.send(.fetchData(guess))
                #expect(try mallory.reply(to: fetch).code == .stale)
                let link = try mallory.send(.link(directory: .root, name: "stolen", target: guess))
                #expect(try mallory.reply(to: link).code != .ok)
            }
            // Two new files do not share a uniquifier either.
            let other = try privateFileSibling(root, name: "other")
            #expect(other.unique != secret.unique)
        }
    }

    func privateFileSibling(_ root: RawProtocolClient, name: String) throws -> FID {
        let create = try root.send(.createFile(CreateRequest(directory: .root, name: name, type: .regular, mode: 0o644, uid: 0, gid: 0)))
        guard case .success(.namespace(let created, _)) = try root.reply(to: create), let file = created.target?.fid else {
            throw RawProtocolClient.Failure(description: "create failed")
        }
        return file
    }
}

extension Optional where Wrapped == Result<Reply, StatusCode> {
    /// The reply's status: ok for any success, nil when the connection closed first.
    var code: StatusCode? {
        switch self {
        case .success?: .ok
        case .failure(let code)?: code
        case nil: nil
        }
    }
}
