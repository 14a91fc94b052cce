import CFuse3
import Glibc
import PeachClient

/// Tells the kernel of this mount that what it cached of an inode or a name is stale.
/// Inode and entry invalidations wait for kernel locks (the inode's pages, the directory's) that
/// a request in progress may hold, so the cache manager sends them from its kernel queue, never
/// from a thread serving a request. An attributes-only invalidation (`invalidateAttributes`)
/// takes no such lock: an open sends it from its own thread, before it replies.
final class KernelInvalidator: KernelNotifier, @unchecked Sendable {
    /// The session outlives every call: it is destroyed only after the notifier is removed.
    private let session: OpaquePointer

    init(session: OpaquePointer) {
        self.session = session
    }

    func invalidateInode(_ inode: Inode) {
        // ENOENT: the kernel does not know the inode (nothing to drop); fine, as ENODEV at unmount.
        _ = fuse_lowlevel_notify_inval_inode(session, inode, 0, 0)
    }

    func invalidateAttributes(_ inode: Inode) {
        // A negative offset: attributes only, the page cache stays.
        _ = fuse_lowlevel_notify_inval_inode(session, inode, -1, 0)
    }

    func invalidateEntry(parent: Inode, name: String) {
        _ = name.withCString { fuse_lowlevel_notify_inval_entry(session, parent, $0, name.utf8.count) }
    }
}
