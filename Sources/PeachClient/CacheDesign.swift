import Glibc
import PeachProtocol

/// A client design as the core (`ClientCore`) sees it: the design holds what it caches and how
/// it trusts it; the core, everything else. The operations both designs do the same way live here,
/// once: kernel notifier and statistics, volume status, and the create path (build the request
/// for the calling process, send it, and for a create without O_EXCL that lost a race, open what
/// is there, as open(2) does).
protocol CacheDesign: CacheManager {
    associatedtype OpenHandle: Sendable
    /// What a reply's statuses are checked against, taken before its request leaves
    /// (`ServerPipeline.swift`): AFS mode's break stamp; nothing in NFS mode.
    associatedtype Stamp
    var core: ClientCore<OpenHandle> { get }
    func stampBeforeSending() -> Stamp
    /// The FID the design knows `inode` by (ESTALE if it knows none).
    func fid(of inode: Inode) throws -> FID
    /// Sends a CreateFile, MakeDir, Symlink or Link through the pipeline, records
    /// the reply, and returns the entry.
    func createdEntry(_ request: Request, parent: Inode, name: String) throws -> Entry
    /// Opens the file `entry` names, created empty by this client a moment ago: nothing to fetch.
    func openCreated(_ entry: Entry, flags: Int32) throws -> OpenReply
}

extension CacheDesign {
    public var statistics: ClientStatistics { core.statistics }

    /// `peach fs checkservers`: 5 s at most for the answer.
    public func checkServer() -> ServerCheck { core.checkServer(timeout: .seconds(5)) }

    public func setKernelNotifier(_ notifier: KernelNotifier?) { core.setNotifier(notifier) }

    var notifier: KernelNotifier? { core.notifier }

    public func volumeStatus() throws -> VolumeStatus {
        try perform(.getVolumeStatus) { reply, _ in
            guard case .volumeStatus(let status) = reply else { throw FileSystemError.unexpectedReply }
            return status
        }
    }

    public func location(of inode: Inode) throws -> FileLocation {
        let address = core.serverAddress
        return FileLocation(server: "\(address.host):\(address.port)", fid: try fid(of: inode).description)
    }

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
