import Foundation
import PeachProtocol

/// A dirty copy that could not be stored because the server's file had moved past the version
/// the copy was based on (another client stored it meanwhile). It is never stored over that
/// newer version and never dropped: its bytes stay in the cache directory until a person
/// decides (docs/recovery.md).
public struct Conflict: Codable, Sendable, Equatable {
    /// The path inside the mount when the copy became dirty, if the cache manager knew it.
    public var path: String?
    public var fid: String
    /// The data version the copy was based on.
    public var baseVersion: UInt64
    public var size: UInt64
    /// Unix seconds.
    public var keptAt: UInt64
    /// The file holding the bytes.
    public var file: String
}

/// The `conflicts/` folder of a cache directory: each conflict is its data file and a
/// `.json` record beside it. Files, not index rows: a person reads and removes them by hand.
struct ConflictStore: Sendable {
    let directory: String

    init(cacheDirectory: String) throws {
        directory = cacheDirectory + "/conflicts"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    /// Moves `file` (a dirty cache file) here and records it.
    func keep(_ file: String, fid: FID, baseVersion: UInt64, size: UInt64, path: String?) throws -> Conflict {
        let now = UInt64(time(nil))
        let name = "\(fid.vnode).\(fid.unique).\(baseVersion).\(now).\(UUID().uuidString.prefix(8))"
        let destination = directory + "/" + name
        guard rename(file, destination) == 0 else { throw FileSystemError(errno, "keeping a conflicting copy") }
        let conflict = Conflict(path: path, fid: fid.description, baseVersion: baseVersion, size: size, keptAt: now, file: destination)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        try encoder.encode(conflict).write(to: URL(fileURLWithPath: destination + ".json"), options: .atomic)
        return conflict
    }

    /// Every conflict whose data file is still here, oldest first.
    func list() -> [Conflict] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasSuffix(".json") }.compactMap { name -> Conflict? in
            guard let data = FileManager.default.contents(atPath: directory + "/" + name),
                  let conflict = try? JSONDecoder().decode(Conflict.self, from: data),
                  FileManager.default.fileExists(atPath: conflict.file) else { return nil }
            return conflict
        }.sorted { ($0.keptAt, $0.file) < ($1.keptAt, $1.file) }
    }
}
