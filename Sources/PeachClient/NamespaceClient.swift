import Glibc
import NIOConcurrencyHelpers
import PeachProtocol

/// What both client designs do the same way: hold the kernel notifier, build a create request for
/// the calling process, send it, and for a create without O_EXCL that lost a race, open what is
/// there, as open(2) does. Each design supplies how it sends a change and records the reply
/// (`createdEntry`), and how it opens a file it has just created, empty (`openCreated`).
protocol NamespaceClient: CacheManager {
    var kernel: KernelNotifierBox { get }
    /// The FID the design knows `inode` by (ESTALE if it knows none).
    func fid(of inode: Inode) throws -> FID
    /// Sends a CreateFile, MakeDir, Symlink or Link, records the reply, and returns the entry.
    func createdEntry(_ request: Request, parent: Inode, name: String) throws -> Entry
    /// Opens the file `entry` names, created empty by this client a moment ago: nothing to fetch.
    func openCreated(_ entry: Entry, flags: Int32) throws -> OpenReply
}

extension NamespaceClient {
    public func setKernelNotifier(_ notifier: KernelNotifier?) { kernel.set(notifier) }

    var notifier: KernelNotifier? { kernel.notifier }

    func createRequest(parent: Inode, name: String, type: FileType, mode: UInt32, rdev: UInt64 = 0,
                       target: String = "", context: RequestContext) throws -> CreateRequest {
        CreateRequest(in: try fid(of: parent), name: name, type: type, mode: mode, context: context, rdev: rdev,
                      symlinkTarget: target)
    }

    public func create(parent: Inode, name: String, mode: UInt32, flags: Int32, context: RequestContext) throws -> (Entry, OpenReply) {
        let request = try createRequest(parent: parent, name: name, type: .regular, mode: mode, context: context)
        let entry: Entry
        do {
            entry = try createdEntry(.createFile(request), parent: parent, name: name)
        } catch let error as FileSystemError where error.errno == EEXIST && flags & O_EXCL == 0 {
            // Another client created it first: open what is there, as open(2) without O_EXCL does.
            let existing = try lookup(parent: parent, name: name)
            return (existing, try open(existing.inode, flags: flags))
        }
        statistics.update { $0.opens += 1 }
        return (entry, try openCreated(entry, flags: flags))
    }

    public func makeNode(parent: Inode, name: String, type: FileType, mode: UInt32, rdev: UInt64, context: RequestContext) throws -> Entry {
        try createdEntry(.createFile(try createRequest(parent: parent, name: name, type: type, mode: mode, rdev: rdev, context: context)),
                         parent: parent, name: name)
    }

    public func link(_ inode: Inode, newParent: Inode, newName: String) throws -> Entry {
        try createdEntry(.link(directory: try fid(of: newParent), name: newName, target: try fid(of: inode)), parent: newParent, name: newName)
    }
}

/// The kernel notifier a FUSE adapter installs (nil for in-process clients), for either design.
final class KernelNotifierBox: Sendable {
    private let box = NIOLockedValueBox<KernelNotifier?>(nil)

    var notifier: KernelNotifier? { box.withLockedValue { $0 } }

    func set(_ notifier: KernelNotifier?) { box.withLockedValue { $0 = notifier } }
}
