import Foundation
import Glibc
import PeachClient

/// `peach fs …` talks to the cache manager serving a path through extended attributes on that
/// path, as AFS's `fs` command uses pioctl: the kernel routes the call to the right mount.
///
/// - `user.peach.stats` (get): the statistics JSON.
/// - `user.peach.callbacks` (get): the callbacks held, JSON.
/// - `user.peach.conflicts` (get): dirty copies kept aside (`Conflict`), JSON.
/// - `user.peach.flush` (set): store the file if dirty and drop its cached copy.
public enum ControlAttributes {
    public static let stats = "user.peach.stats"
    public static let callbacks = "user.peach.callbacks"
    public static let conflicts = "user.peach.conflicts"
    public static let flush = "user.peach.flush"
    /// The kernel's limit on one extended attribute value.
    static let maximumValueSize = 65536

    static func get(_ name: String, inode: Inode, cacheManager: CacheManager) throws -> [CChar] {
        let json: String
        switch name {
        case stats:
            json = cacheManager.statistics.json()
        case callbacks:
            json = callBacksJSON(cacheManager.callBacks())
        case conflicts:
            json = listJSON(cacheManager.conflicts())
        default:
            throw FileSystemError(ENODATA)
        }
        return json.utf8.map { CChar(bitPattern: $0) }
    }

    static func set(_ name: String, inode: Inode, cacheManager: CacheManager) throws {
        guard name == flush else { throw FileSystemError(EOPNOTSUPP) }
        try cacheManager.flushCachedCopy(inode)
    }

    /// A list as JSON, as much of it as fits in one attribute value (the oldest first).
    static func listJSON<T: Encodable>(_ all: [T]) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
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
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        var shown = all
        while true {
            let listing = Listing(count: all.count, truncated: shown.count < all.count, callbacks: shown)
            let data = (try? encoder.encode(listing)) ?? Data()
            if data.count <= maximumValueSize || shown.isEmpty { return String(decoding: data, as: UTF8.self) }
            shown.removeLast(max(1, shown.count / 4))
        }
    }
}
