import Glibc
import PeachProtocol

/// The one place a reply's statuses reach AFS mode's table (`ServerPipeline.swift` brings them).
extension CachedVnodeTable {
    /// Installs every status `reply` carries, each with its promise unless a break for its FID
    /// arrived after `stamp` (taken before `request` left). A namespace change also edits the
    /// cached listings it touched (`applyNamespaceChange`).
    mutating func apply(_ reply: Reply, for request: Request, stamp: BreakStamp) throws {
        switch reply {
        case .status(let status, let expiry):
            install(status, expiry: expiry, stamp: stamp)
        case .bulkStatus(let results, let expiry):
            for case .status(let status) in results { install(status, expiry: expiry, stamp: stamp) }
        case .namespace(let change, let expiry):
            applyNamespaceChange(change, expiry: expiry, request: request, stamp: stamp)
        case .volumeStatus, .done:
            break
        default:
            throw FileSystemError.unexpectedReply
        }
    }

    /// A namespace change of ours: each directory's cached listing is edited in place when the
    /// reply shows ours was the only change since it was fetched (dropped by `install`
    /// otherwise); the directories and the object are installed.
    private mutating func applyNamespaceChange(_ change: NamespaceChange, expiry: UInt64, request: Request, stamp: BreakStamp) {
        let (removed, added) = Self.names(request)
        for status in change.changedDirectories {
            // Decided on a copy that is gone before the edit, which then changes the listing in place.
            let editable = self[fid: status.fid].map {
                $0.listing != nil && hasValidCallBack($0) && $0.listingVersion + 1 == status.dataVersion
            } ?? false
            if editable {
                update(status.fid) { directory in
                    // Edited in place: a copy would cost the whole listing on every create.
                    if let removed, removed.directory == status.fid { directory.listing![removed.name] = nil }
                    if let added, added.directory == status.fid, let target = change.target {
                        directory.listing![added.name] = DirectoryEntry(name: added.name, fid: target.fid, type: target.type)
                    }
                    directory.listingVersion = status.dataVersion
                }
            }
            install(status, expiry: expiry, stamp: stamp)
        }
        // A link count of 0: the object was removed; nothing to cache.
        if let target = change.target, target.linkCount > 0 { install(target, expiry: expiry, stamp: stamp) }
    }

    /// The name a namespace request takes away and the one it adds, each in its directory.
    private static func names(_ request: Request) -> (removed: (directory: FID, name: String)?, added: (directory: FID, name: String)?) {
        switch request {
        case .createFile(let create), .makeDir(let create), .symlink(let create):
            return (nil, (create.directory, create.name))
        case .link(let directory, let name, _):
            return (nil, (directory, name))
        case .removeFile(let directory, let name), .removeDir(let directory, let name):
            return ((directory, name), nil)
        case .rename(let fromDirectory, let fromName, let toDirectory, let toName):
            return ((fromDirectory, fromName), (toDirectory, toName))
        default:
            return (nil, nil)
        }
    }
}
