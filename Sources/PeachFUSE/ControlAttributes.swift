import Foundation
import Glibc
import PeachClient

/// `peach fs …` talks to the cache manager serving a path through extended attributes on that
/// path, as AFS's `fs` command uses pioctl: the kernel routes the call to the right mount.
///
/// - `user.peach.stats` (get): the statistics JSON.
/// - `user.peach.callbacks` (get): the callbacks held, JSON.
/// - `user.peach.conflicts` (get): dirty copies kept aside (`Conflict`), JSON.
/// - `user.peach.cacheparms` (get): the cache's use and limit (`CacheParameters`), JSON.
/// - `user.peach.whereis` (get): the server and the FID of the path (`FileLocation`), JSON.
/// - `user.peach.sync` (get): stores every dirty file of the mount first (`SyncReport`), JSON.
/// - `user.peach.flushall` (get): drops every cached copy nothing holds open, storing dirty ones
///   first (`FlushReport`), JSON.
/// - `user.peach.checkservers` (get): whether the file server answers a ping, and how fast
///   (`ServerCheck`), JSON; at most 5 s for the answer (10 s more to connect), and at once when it
///   is known to be away.
/// - `user.peach.flush` (set): store the file if dirty and drop its cached copy.
/// - `user.peach.cachesize` (set): the cache's new limit, the value a decimal number of bytes.
/// - `user.peach.storebehind` (get: `StoreBehindState`, JSON; set: `on` or `off`): whether a
///   close returns before its store (AFS mode).
///
/// Each is also `trusted.peach.…`, for root (see `trusted`).
///
/// `sync` and `flushall` act when read, as a pioctl does; reading them again is harmless (nothing
/// is left to do), and the control names are never listed, so `getfattr -d` does not read them.
public enum ControlAttributes {
    public static let stats = "user.peach.stats"
    public static let callbacks = "user.peach.callbacks"
    public static let conflicts = "user.peach.conflicts"
    public static let cacheParameters = "user.peach.cacheparms"
    public static let whereIs = "user.peach.whereis"
    public static let sync = "user.peach.sync"
    public static let flushAll = "user.peach.flushall"
    public static let flush = "user.peach.flush"
    public static let checkServers = "user.peach.checkservers"
    public static let cacheSize = "user.peach.cachesize"
    public static let storeBehind = "user.peach.storebehind"
    /// The smallest cache limit `cachesize` takes: room for a few files.
    public static let minimumCacheSize: UInt64 = 1 << 20

    /// The same control in the trusted namespace, which only root may use: for it the kernel
    /// checks no file permission, so it asks the mount for no attributes first, and the question
    /// reaches the cache manager while the server is down, even on a hard mount.
    public static func trusted(_ name: String) -> String {
        name.hasPrefix("user.") ? "trusted." + name.dropFirst("user.".count) : name
    }

    /// `trusted.peach.X` names `user.peach.X`.
    static func canonical(_ name: String) -> String {
        name.hasPrefix("trusted.peach.") ? "user." + name.dropFirst("trusted.".count) : name
    }

    /// The kernel's limit on one extended attribute value.
    static let maximumValueSize = 65536

    /// Controls about every user's files, not the caller's path: only root may use them on a
    /// mount other users reach (`--allow-other`), as only root may use OpenAFS's `fs flushall`.
    /// The callbacks and conflicts name paths inside directories the caller may not search;
    /// flushall drops every user's cached copies; cachesize changes the mount.
    static let rootOnly: Set<String> = [callbacks, conflicts, flushAll, cacheSize, storeBehind]

    static func requireRootIfMountWide(_ control: String) throws {
        guard rootOnly.contains(control), Caller.credential.uid != 0 else { return }
        throw FileSystemError(EPERM, "\(control) needs root")
    }

    static func get(_ name: String, inode: Inode, cacheManager: CacheManager) throws -> [CChar] {
        let json: String
        let control = canonical(name)
        try requireRootIfMountWide(control)
        switch control {
        case stats:
            json = cacheManager.statistics.json()
        case callbacks:
            json = callBacksJSON(cacheManager.callBacks())
        case conflicts:
            json = listJSON(cacheManager.conflicts())
        case cacheParameters:
            json = encode(cacheManager.cacheParameters())
        case whereIs:
            json = encode(try cacheManager.location(of: inode))
        case sync:
            json = encode(cacheManager.storeAllDirty())
        case flushAll:
            json = encode(cacheManager.flushAll())
        case checkServers:
            json = encode(cacheManager.checkServer())
        case storeBehind:
            json = encode(try cacheManager.storeBehindState())
        default:
            throw FileSystemError(ENODATA)
        }
        return json.utf8.map { CChar(bitPattern: $0) }
    }

    static func set(_ name: String, value: [UInt8], inode: Inode, cacheManager: CacheManager) throws {
        let control = canonical(name)
        try requireRootIfMountWide(control)
        switch control {
        case flush:
            try cacheManager.flushCachedCopy(inode)
        case cacheSize:
            guard value.count <= 20, let bytes = UInt64(String(decoding: value, as: UTF8.self)), bytes >= minimumCacheSize else {
                throw FileSystemError(EINVAL)
            }
            _ = cacheManager.setCacheSize(bytes)
        case storeBehind:
            switch String(decoding: value, as: UTF8.self) {
            case "on": try cacheManager.setStoreBehind(true)
            case "off": try cacheManager.setStoreBehind(false)
            default: throw FileSystemError(EINVAL)
            }
        default:
            throw FileSystemError(EOPNOTSUPP)
        }
    }

    /// The JSON every control attribute answers with: sorted keys, indented, slashes as they are.
    static func jsonEncoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return encoder
    }

    static func encode<T: Encodable>(_ value: T) -> String {
        String(decoding: (try? jsonEncoder().encode(value)) ?? Data(), as: UTF8.self)
    }

    /// A list as JSON, as much of it as fits in one attribute value (the oldest first).
    static func listJSON<T: Encodable>(_ all: [T]) -> String {
        let encoder = jsonEncoder()
        var shown = all
        while true {
            let data = (try? encoder.encode(shown)) ?? Data()
            if data.count <= maximumValueSize || shown.isEmpty { return String(decoding: data, as: UTF8.self) }
            shown.removeLast(max(1, shown.count / 4))
        }
    }

    /// The list, cut to what fits in one attribute value ("truncated": true says so).
    static func callBacksJSON(_ all: [CallBackInfo]) -> String {
        struct Listing: Encodable {
            var count: Int
            var truncated: Bool
            var callbacks: [CallBackInfo]
        }
        let encoder = jsonEncoder()
        var shown = all
        while true {
            let listing = Listing(count: all.count, truncated: shown.count < all.count, callbacks: shown)
            let data = (try? encoder.encode(listing)) ?? Data()
            if data.count <= maximumValueSize || shown.isEmpty { return String(decoding: data, as: UTF8.self) }
            shown.removeLast(max(1, shown.count / 4))
        }
    }
}
