import CFuse3
import Foundation
import PeachProtocol
import Synchronization

/// The supplementary groups of the processes the mount serves, kept for a second.
///
/// libfuse learns a caller's groups by reading /proc/PID/status (`fuse_req_getgroups`): a file
/// read, and its rendering in the kernel, for every request that reaches the server. As the Linux
/// NFS client keeps a credential rather than building it per RPC, the groups are kept here by
/// pid, uid and gid for `lifetime`. A process that changes its groups without changing its uid or
/// gid (rare: newgrp changes the gid, a login daemon the uid) is seen with the new ones within
/// that second, as it would be by an NFS client until its credential cache expires.
final class CredentialCache: Sendable {
    struct Key: Hashable {
        var pid: pid_t
        var uid: uid_t
        var gid: gid_t
    }

    private struct Entry {
        var groups: [UInt32]
        var expires: UInt64
    }

    static let lifetime: UInt64 = 1_000_000_000
    /// Entries kept at most; past it the table is emptied (a burst of short processes).
    static let capacity = 4096

    private let entries = Mutex<[Key: Entry]>([:])

    /// The credential of the process that sent `request`.
    func credential(_ request: fuse_req_t?) -> Credential {
        guard let ctx = fuse_req_ctx(request)?.pointee else { return .root }
        let key = Key(pid: ctx.pid, uid: ctx.uid, gid: ctx.gid)
        let now = DispatchTime.now().uptimeNanoseconds
        if let groups = entries.withLock({ table in table[key].flatMap { $0.expires > now ? $0.groups : nil } }) {
            return Credential(uid: key.uid, gid: key.gid, groups: groups)
        }
        var buffer = [gid_t](repeating: 0, count: Credential.maximumGroups)
        let count = fuse_req_getgroups(request, Int32(buffer.count), &buffer)
        let groups = count > 0 ? Array(buffer.prefix(Int(min(count, Int32(buffer.count))))) : []
        entries.withLock { table in
            if table.count >= Self.capacity { table.removeAll(keepingCapacity: true) }
            table[key] = Entry(groups: groups, expires: now + Self.lifetime)
        }
        return Credential(uid: key.uid, gid: key.gid, groups: groups)
    }
}
