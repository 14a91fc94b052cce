import PeachProtocol

/// Who may change which attribute, and what a change does to the mode, as Linux's
/// setattr_prepare and notify_change decide it.
enum SetAttributeRules {
    /// Checks `attributes` against `identity` and returns the mode the vnode ends up with.
    static func check(_ attributes: SetAttributes, on status: FileStatus, for identity: Identity?) throws -> UInt32 {
        var mode = status.mode
        guard !attributes.isEmpty else { return mode }
        try AccessCheck.requireWritable(identity)
        let superUser = identity?.isSuperUser ?? true
        if let newMode = attributes.mode {
            // Taking the set-id bits away, and nothing else, is what a write does: the kernel
            // asks it of the file system before a non-owner's write to a set-id file. Whoever may
            // write the file may do it; anything else is the owner's.
            let takesPrivilegeBitsAway = newMode & 0o7777 == status.mode & ~FileStatus.privilegeBits(status.mode)
                && newMode & 0o7777 != status.mode && status.type == .regular
            if takesPrivilegeBitsAway && attributes.uid == nil && attributes.gid == nil {
                try AccessCheck.requireData(AccessCheck.write, on: status, for: identity)
            } else {
                try AccessCheck.requireOwner(status, for: identity)
            }
            mode = WireValues.mode(newMode)
            // Setting set-group-ID on a file of a group one is not in drops it (chmod(2)).
            if let identity, !superUser, !identity.isMember(of: attributes.gid ?? status.gid) { mode &= ~0o2000 }
        }
        if let uid = attributes.uid, let identity, !superUser, !(identity.uid == status.uid && uid == status.uid) {
            throw StatusCode.permissionDenied  // only root gives a file away (chown(2))
        }
        if attributes.size != nil, status.type == .regular {
            try AccessCheck.requireData(AccessCheck.write, on: status, for: identity)
        }
        if let gid = attributes.gid, let identity, !superUser {
            guard identity.uid == status.uid, gid == status.gid || identity.isMember(of: gid) else {
                throw StatusCode.permissionDenied
            }
        }
        if attributes.uid != nil || attributes.gid != nil, status.type != .directory, attributes.mode == nil {
            // A change of owner or group takes the privilege bits away, even done by root.
            mode &= ~FileStatus.privilegeBits(mode)
        }
        for time in [attributes.atime, attributes.mtime] {
            switch time {
            case .at?:
                try AccessCheck.requireOwner(status, for: identity)
            case .now?:
                if let identity, !superUser, identity.uid != status.uid {
                    try AccessCheck.require(AccessCheck.write, on: status, for: identity)
                }
            case nil:
                break
            }
        }
        if let size = attributes.size, size != status.size, !superUser {
            mode &= ~FileStatus.privilegeBits(mode)
        }
        return mode
    }
}

/// The owner, group and mode of a new file, directory or node: the caller's, with a
/// set-group-ID directory's group and bit passed on, as Linux's inode_init_owner does.
struct NewObjectOwnership {
    var uid: UInt32
    var gid: UInt32
    var mode: UInt32

    init(_ request: CreateRequest, in directory: FileStatus, by identity: Identity?) {
        mode = WireValues.mode(request.mode)
        guard let identity else {
            (uid, gid) = (request.uid, request.gid)  // the server's own calls: as asked
            return
        }
        uid = identity.uid
        gid = identity.gid
        if directory.mode & 0o2000 != 0 {
            gid = directory.gid
            if request.type == .directory { mode |= 0o2000 }
        }
        if mode & 0o2000 != 0, request.type != .directory, !identity.isSuperUser, !identity.isMember(of: gid) {
            mode &= ~0o2000
        }
    }
}
