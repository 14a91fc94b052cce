import Foundation
import PeachProtocol
import PeachSupport
import PeachTesting
import Testing
@testable import PeachServer

/// The server's own permission checks on a real volume, for identities as the policy hands them
/// out: POSIX mode bits, ownership, sticky and set-group-ID directories, privilege bits.
@Suite("Permissions")
struct PermissionTests {
    static let alice = Identity(uid: 1000, gid: 1000)
    static let bob = Identity(uid: 1001, gid: 1001)
    static let root = Identity(uid: 0, gid: 0)

    func withStore<T>(_ body: (VolumeStore) throws -> T) throws -> T {
        let directory = try TemporaryDirectory(prefix: "peach-perm")
        defer { directory.remove() }
        let store = try VolumeStore(root: directory.path + "/server")
        defer { store.releaseRoot() }
        _ = try store.introduce(client: "c", epoch: 1)
        return try body(store)
    }

    func make(_ store: VolumeStore, _ name: String, in directory: FID = .root, type: FileType = .regular, mode: UInt32,
              as identity: Identity, rdev: UInt64 = 0) throws -> FileStatus {
        let request = CreateRequest(directory: directory, name: name, type: type, mode: mode, uid: 0, gid: 0, rdev: rdev,
                                    symlinkTarget: type == .symlink ? "target" : "")
        return try store.create(request, client: .afs("c", as: identity)).value.target!
    }

    func upload(_ store: VolumeStore, _ text: String) -> String {
        let path = store.newUploadPath()
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        return path
    }

    func put(_ store: VolumeStore, _ fid: FID, _ text: String, as identity: Identity) throws -> FileStatus {
        try store.store(fid, client: .afs("c", as: identity), uploadPath: upload(store, text), size: UInt64(text.utf8.count),
                        mtime: .now()).value
    }

    func setattr(_ store: VolumeStore, _ fid: FID, _ attributes: SetAttributes, as identity: Identity) throws -> FileStatus {
        try store.setAttributes(fid, attributes, client: .afs("c", as: identity)).value
    }

    /// A directory anyone may write in, owned by root, with the given mode.
    func shared(_ store: VolumeStore, _ name: String = "shared", mode: UInt32 = 0o777) throws -> FileStatus {
        try make(store, name, type: .directory, mode: mode, as: Self.root)
    }

    @Test("new objects belong to the caller, whatever uid and gid the request names; a 0755 root directory refuses others")
    func creation() throws {
        try withStore { store in
            #expect(throws: StatusCode.accessDenied) { _ = try make(store, "f", mode: 0o644, as: Self.alice) }
            let dir = try shared(store)
            let file = try make(store, "f", in: dir.fid, mode: 0o640, as: Self.alice)
            #expect(file.uid == 1000 && file.gid == 1000 && file.mode == 0o640)
            #expect(throws: StatusCode.permissionDenied) {
                _ = try make(store, "dev", in: dir.fid, type: .characterDevice, mode: 0o600, as: Self.alice, rdev: 1)
            }
            _ = try make(store, "dev", in: dir.fid, type: .characterDevice, mode: 0o600, as: Self.root, rdev: 1)
        }
    }

    @Test("read and write need the mode's bits; the owner may always write its own file; root passes")
    func dataAccess() throws {
        try withStore { store in
            let dir = try shared(store)
            let secret = try make(store, "secret", in: dir.fid, mode: 0o600, as: Self.alice)
            _ = try put(store, secret.fid, "alice's", as: Self.alice)
            #expect(throws: StatusCode.accessDenied) { _ = try store.fetchData(secret.fid, client: .afs("c", as: Self.bob)) }
            #expect(throws: StatusCode.accessDenied) { _ = try store.read(secret.fid, offset: 0, count: 10, as: Self.bob) }
            #expect(throws: StatusCode.accessDenied) { _ = try put(store, secret.fid, "bob's", as: Self.bob) }
            #expect(throws: StatusCode.accessDenied) {
                _ = try store.write(secret.fid, offset: 0, data: [1], client: .stateless("c", as: Self.bob))
            }
            #expect(throws: StatusCode.accessDenied) { _ = try setattr(store, secret.fid, SetAttributes(size: 0), as: Self.bob) }
            _ = try store.fetchData(secret.fid, client: .afs("c", as: Self.root))
            // A file created read-only is still written by its owner (the descriptor it holds).
            let readOnly = try make(store, "ro", in: dir.fid, mode: 0o444, as: Self.alice)
            #expect(try put(store, readOnly.fid, "fine", as: Self.alice).size == 4)
            // Group members read a 0640 file.
            let grouped = try make(store, "grouped", in: dir.fid, mode: 0o640, as: Self.alice)
            let member = Identity(uid: 1002, gid: 50, groups: [1000])
            _ = try store.fetchData(grouped.fid, client: .afs("c", as: member))
        }
    }

    @Test("only the owner changes mode and times, only root gives a file away, groups only to one's own")
    func ownership() throws {
        try withStore { store in
            let dir = try shared(store)
            let file = try make(store, "f", in: dir.fid, mode: 0o644, as: Self.alice)
            #expect(throws: StatusCode.permissionDenied) { _ = try setattr(store, file.fid, SetAttributes(mode: 0o777), as: Self.bob) }
            #expect(throws: StatusCode.permissionDenied) { _ = try setattr(store, file.fid, SetAttributes(uid: 1001), as: Self.alice) }
            #expect(throws: StatusCode.permissionDenied) { _ = try setattr(store, file.fid, SetAttributes(gid: 50), as: Self.alice) }
            let member = Identity(uid: 1000, gid: 1000, groups: [50])
            #expect(try setattr(store, file.fid, SetAttributes(gid: 50), as: member).gid == 50)
            #expect(try setattr(store, file.fid, SetAttributes(uid: 1001), as: Self.root).uid == 1001)
            #expect(throws: StatusCode.permissionDenied) {
                _ = try setattr(store, file.fid, SetAttributes(mtime: .at(Timespec(seconds: 5, nanoseconds: 0))), as: Self.alice)
            }
            // touch (times to now) needs write permission or ownership.
            _ = try setattr(store, file.fid, SetAttributes(mode: 0o666), as: Self.bob)
            _ = try setattr(store, file.fid, SetAttributes(atime: .now, mtime: .now), as: Self.alice)
        }
    }

    @Test("set-user-ID goes on a write by anyone but root and on any change of owner")
    func privilegeBits() throws {
        try withStore { store in
            let dir = try shared(store)
            let tool = try make(store, "tool", in: dir.fid, mode: 0o6777, as: Self.root)
            #expect(tool.mode == 0o6777)
            #expect(try put(store, tool.fid, "evil", as: Self.bob).mode == 0o777)
            _ = try setattr(store, tool.fid, SetAttributes(mode: 0o6755), as: Self.root)
            #expect(try setattr(store, tool.fid, SetAttributes(uid: 1000), as: Self.root).mode == 0o755)
            // Setting set-group-ID for a group one is not in drops it.
            let own = try make(store, "own", in: dir.fid, mode: 0o755, as: Self.alice)
            _ = try setattr(store, own.fid, SetAttributes(gid: 50), as: Self.root)
            #expect(try setattr(store, own.fid, SetAttributes(mode: 0o2755), as: Self.alice).mode == 0o755)
        }
    }

    @Test("a sticky directory lets only the owners remove or rename an entry")
    func stickyDirectory() throws {
        try withStore { store in
            let tmp = try shared(store, "tmp", mode: 0o1777)
            _ = try make(store, "alices", in: tmp.fid, mode: 0o644, as: Self.alice)
            #expect(throws: StatusCode.permissionDenied) {
                _ = try store.remove(directory: tmp.fid, name: "alices", isDirectory: false, client: .afs("c", as: Self.bob))
            }
            #expect(throws: StatusCode.permissionDenied) {
                _ = try store.rename(from: tmp.fid, "alices", to: tmp.fid, "bobs", client: .afs("c", as: Self.bob))
            }
            _ = try store.rename(from: tmp.fid, "alices", to: tmp.fid, "renamed", client: .afs("c", as: Self.alice))
            _ = try store.remove(directory: tmp.fid, name: "renamed", isDirectory: false, client: .afs("c", as: Self.alice))
        }
    }

    @Test("removing needs write and search on the directory; moving a directory needs write on it")
    func namespaceChanges() throws {
        try withStore { store in
            let base = try shared(store, "base")
            let closed = try make(store, "closed", in: base.fid, type: .directory, mode: 0o755, as: Self.alice)
            _ = try make(store, "f", in: closed.fid, mode: 0o666, as: Self.alice)
            #expect(throws: StatusCode.accessDenied) {
                _ = try store.remove(directory: closed.fid, name: "f", isDirectory: false, client: .afs("c", as: Self.bob))
            }
            let stranger = Identity(uid: 5, gid: 5)
            _ = try setattr(store, closed.fid, SetAttributes(mode: 0o750), as: Self.alice)
            #expect(throws: StatusCode.accessDenied) { _ = try store.lookup(directory: closed.fid, name: "f", as: stranger) }
            let open = try shared(store, "open")
            let other = try shared(store, "other")
            let sub = try make(store, "sub", in: open.fid, type: .directory, mode: 0o555, as: Self.bob)
            #expect(throws: StatusCode.accessDenied) {
                _ = try store.rename(from: open.fid, "sub", to: other.fid, "sub", client: .afs("c", as: Self.bob))
            }
            _ = try setattr(store, sub.fid, SetAttributes(mode: 0o755), as: Self.bob)
            _ = try store.rename(from: open.fid, "sub", to: other.fid, "sub", client: .afs("c", as: Self.bob))
        }
    }

    @Test("a set-group-ID directory passes on its group, and its bit to new directories")
    func setGroupIDDirectory() throws {
        try withStore { store in
            let project = try make(store, "project", type: .directory, mode: 0o2777, as: Self.root)
            _ = try setattr(store, project.fid, SetAttributes(gid: 77), as: Self.root)
            let file = try make(store, "f", in: project.fid, mode: 0o644, as: Self.alice)
            #expect(file.gid == 77)
            let dir = try make(store, "d", in: project.fid, type: .directory, mode: 0o755, as: Self.alice)
            #expect(dir.gid == 77 && dir.mode & 0o2000 != 0)
        }
    }

    @Test("a read-only machine reads and changes nothing")
    func readOnlyMachine() throws {
        try withStore { store in
            let dir = try shared(store)
            let file = try make(store, "f", in: dir.fid, mode: 0o666, as: Self.alice)
            var reader = Self.alice
            reader.readOnly = true
            _ = try store.fetchData(file.fid, client: .afs("c", as: reader))
            #expect(throws: StatusCode.readOnly) { _ = try put(store, file.fid, "x", as: reader) }
            #expect(throws: StatusCode.readOnly) { _ = try make(store, "g", in: dir.fid, mode: 0o644, as: reader) }
            #expect(throws: StatusCode.readOnly) { _ = try setattr(store, file.fid, SetAttributes(mode: 0o600), as: reader) }
            #expect(throws: StatusCode.readOnly) {
                _ = try store.remove(directory: dir.fid, name: "f", isDirectory: false, client: .afs("c", as: reader))
            }
        }
    }
}

/// How credentials become identities: root squashing, local users, read-only machines.
@Suite("Identity policy")
struct IdentityPolicyTests {
    let root = Credential(uid: 0, gid: 0)
    let user = Credential(uid: 1000, gid: 1000, groups: [4, 24])

    @Test("root of a certified machine is squashed unless listed; users act as themselves")
    func rootSquash() {
        let policy = IdentityPolicy(anonymousUID: 99, anonymousGID: 98, noRootSquash: ["admin"])
        #expect(policy.identity(for: root, from: .machine("laptop")) == Identity(uid: 99, gid: 98))
        #expect(policy.identity(for: root, from: .machine("admin")) == Identity(uid: 0, gid: 0))
        #expect(policy.identity(for: user, from: .machine("laptop")) == Identity(uid: 1000, gid: 1000, groups: [4, 24]))
        #expect(policy.identity(for: root, from: .unauthenticated("192.0.2.1")).uid == 99)
    }

    @Test("this machine's root is root; a local user is itself whatever it claims; all-squash and read-only apply")
    func localPeers() {
        let policy = IdentityPolicy()
        #expect(policy.identity(for: root, from: .localRoot).isSuperUser)
        let mallory = Identity(uid: 1001, gid: 1001)
        #expect(policy.identity(for: root, from: .localUser(mallory)) == mallory)
        let squashAll = IdentityPolicy(allSquash: true, readOnlyClients: ["kiosk"])
        #expect(squashAll.identity(for: user, from: .machine("x")).uid == 65534)
        #expect(squashAll.identity(for: root, from: .localRoot).uid == 65534)
        #expect(squashAll.identity(for: user, from: .machine("kiosk")).readOnly)
    }
}
