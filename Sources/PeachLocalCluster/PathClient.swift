import Foundation
import PeachClient
import PeachProtocol

/// Path-based calls on a cache manager, as a process would make them through a mount: for
/// tests and in-process benchmarks. Each call resolves the path with lookups from the root.
public struct PathClient: Sendable {
    public let cacheManager: CacheManager
    public var context = RequestContext.root

    public init(_ cacheManager: CacheManager) {
        self.cacheManager = cacheManager
    }

    public func resolve(_ path: String) throws -> Inode {
        var inode: Inode = 1
        for component in path.split(separator: "/") where !component.isEmpty {
            inode = try cacheManager.lookup(parent: inode, name: String(component)).inode
        }
        return inode
    }

    func split(_ path: String) throws -> (parent: Inode, name: String) {
        var components = path.split(separator: "/").map(String.init)
        guard let name = components.popLast() else { throw FileSystemError.invalid }
        return (try resolve(components.joined(separator: "/")), name)
    }

    /// An open file; `close()` flushes (stores) and releases, as close(2) does.
    public struct OpenFile: Sendable {
        public let cacheManager: CacheManager
        public let handle: UInt64

        public func read(offset: UInt64 = 0, count: Int = 1 << 20) throws -> [UInt8] {
            var result = [UInt8](repeating: 0, count: count)
            let n = try result.withUnsafeMutableBytes { try cacheManager.read(handle: handle, offset: offset, into: $0) }
            result.removeLast(count - n)
            return result
        }

        public func readAll() throws -> [UInt8] {
            var all: [UInt8] = []
            while true {
                let chunk = try read(offset: UInt64(all.count))
                if chunk.isEmpty { return all }
                all += chunk
            }
        }

        public func write(_ bytes: [UInt8], offset: UInt64 = 0) throws {
            _ = try bytes.withUnsafeBytes { try cacheManager.write(handle: handle, offset: offset, from: $0) }
        }

        public func close() throws {
            defer { cacheManager.release(handle: handle) }
            try cacheManager.flush(handle: handle)
        }
    }

    public func open(_ path: String, flags: Int32 = O_RDONLY) throws -> OpenFile {
        OpenFile(cacheManager: cacheManager, handle: try cacheManager.open(try resolve(path), flags: flags).handle)
    }

    public func create(_ path: String, mode: UInt32 = 0o644, exclusive: Bool = false) throws -> OpenFile {
        let (parent, name) = try split(path)
        let (_, reply) = try cacheManager.create(parent: parent, name: name, mode: mode,
                                                 flags: O_RDWR | O_CREAT | (exclusive ? O_EXCL : 0), context: context)
        return OpenFile(cacheManager: cacheManager, handle: reply.handle)
    }

    /// Writes a whole file (creating it if needed) and closes it.
    public func writeFile(_ path: String, _ bytes: [UInt8]) throws {
        let file: OpenFile
        do {
            file = try open(path, flags: O_RDWR | O_TRUNC)
        } catch let error as FileSystemError where error.errno == ENOENT {
            file = try create(path)
        }
        try file.write(bytes)
        try file.close()
    }

    public func writeFile(_ path: String, _ text: String) throws {
        try writeFile(path, Array(text.utf8))
    }

    public func readFile(_ path: String) throws -> [UInt8] {
        let file = try open(path)
        defer { try? file.close() }
        return try file.readAll()
    }

    public func readText(_ path: String) throws -> String {
        String(decoding: try readFile(path), as: UTF8.self)
    }

    public func makeDirectory(_ path: String, mode: UInt32 = 0o755) throws {
        let (parent, name) = try split(path)
        _ = try cacheManager.makeDirectory(parent: parent, name: name, mode: mode, context: context)
    }

    public func list(_ path: String) throws -> [String] {
        try cacheManager.readDirectory(try resolve(path)).map(\.name).filter { $0 != "." && $0 != ".." }
    }

    public func stat(_ path: String) throws -> FileStatus {
        try cacheManager.getAttributes(try resolve(path), handle: nil).status
    }

    public func unlink(_ path: String) throws {
        let (parent, name) = try split(path)
        try cacheManager.unlink(parent: parent, name: name)
    }

    public func removeDirectory(_ path: String) throws {
        let (parent, name) = try split(path)
        try cacheManager.removeDirectory(parent: parent, name: name)
    }

    public func rename(_ from: String, _ to: String) throws {
        let (fromParent, fromName) = try split(from)
        let (toParent, toName) = try split(to)
        try cacheManager.rename(parent: fromParent, name: fromName, newParent: toParent, newName: toName, noReplace: false)
    }

    public func link(_ existing: String, _ new: String) throws {
        let (parent, name) = try split(new)
        _ = try cacheManager.link(try resolve(existing), newParent: parent, newName: name)
    }

    public func chmod(_ path: String, _ mode: UInt32) throws {
        _ = try cacheManager.setAttributes(try resolve(path), SetAttributes(mode: mode), handle: nil)
    }
}
