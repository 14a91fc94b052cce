import PeachProtocol

/// POSIX permission checks, made by the server itself on the identity a request acts as, not
/// by the client's kernel. A nil identity (the server's own calls, tests of the store) skips them.
enum AccessCheck {
    static let read: UInt32 = 4
    static let write: UInt32 = 2
    static let search: UInt32 = 1

    /// Throws EACCES unless `identity` has all of `wanted` (r=4, w=2, x=1) on `status`.
    static func require(_ wanted: UInt32, on status: FileStatus, for identity: Identity?) throws {
        guard let identity, !identity.isSuperUser else { return }
        guard granted(on: status, to: identity) & wanted == wanted else { throw StatusCode.accessDenied }
    }

    /// The owner's, the group's or the others' three bits of the mode, whichever class `identity` is in.
    static func granted(on status: FileStatus, to identity: Identity) -> UInt32 {
        if identity.uid == status.uid { return (status.mode >> 6) & 7 }
        if identity.isMember(of: status.gid) { return (status.mode >> 3) & 7 }
        return status.mode & 7
    }

    /// At least one of `wanted`'s bits (a directory fetched whole: read or search).
    static func requireSome(_ wanted: UInt32, on status: FileStatus, for identity: Identity?) throws {
        guard let identity, !identity.isSuperUser else { return }
        guard granted(on: status, to: identity) & wanted != 0 else { throw StatusCode.accessDenied }
    }

    /// Whether `identity` may be promised `status`'s object: it may read it (a directory: read
    /// or search it, as a fetch of its listing needs). A promise lets its holder make every
    /// change to the object wait for it, so no one gets one on what they cannot read.
    static func mayHoldPromise(on status: FileStatus, for identity: Identity) -> Bool {
        if identity.isSuperUser || identity.uid == status.uid { return true }
        let wanted = status.type == .directory ? read | search : read
        return granted(on: status, to: identity) & wanted != 0
    }

    /// Reading or writing a file's data. The owner may always do it, as Linux's NFS server lets
    /// it (NFSD_MAY_OWNER_OVERRIDE): a process that created a file with mode 0444 may still
    /// write it through the descriptor it has, and the store at close must not fail.
    static func requireData(_ wanted: UInt32, on status: FileStatus, for identity: Identity?) throws {
        if let identity, identity.uid == status.uid { return }
        try require(wanted, on: status, for: identity)
    }

    /// Any change: refused to a read-only machine.
    static func requireWritable(_ identity: Identity?) throws {
        if identity?.readOnly == true { throw StatusCode.readOnly }
    }

    /// Changing entries of `directory`: write and search permission on it.
    static func requireChange(in directory: FileStatus, for identity: Identity?) throws {
        try requireWritable(identity)
        try require(write | search, on: directory, for: identity)
    }

    /// Removing or renaming away `object` from a sticky `directory` needs its owner, the
    /// directory's owner, or root (EPERM otherwise, as Linux answers).
    static func requireStickyOwnership(_ object: FileStatus, in directory: FileStatus, for identity: Identity?) throws {
        guard let identity, !identity.isSuperUser, directory.mode & 0o1000 != 0 else { return }
        guard identity.uid == object.uid || identity.uid == directory.uid else { throw StatusCode.permissionDenied }
    }

    /// Only the owner, or root, changes mode, times to a given value, or group.
    static func requireOwner(_ status: FileStatus, for identity: Identity?) throws {
        guard let identity, !identity.isSuperUser else { return }
        guard identity.uid == status.uid else { throw StatusCode.permissionDenied }
    }
}
