import CPeachSystem
import Foundation
import PeachClient
import PeachLocalCluster
import PeachProtocol

/// What a workload does to a file system, so one workload runs against an in-process cache
/// manager (exact counts, no mount) or a real mount (system calls through the kernel).
public protocol BenchFileSystem: Sendable {
    /// open (creating it, truncating when asked), write `bytes` at 0 in `chunk`-sized writes, close.
    func writeFile(_ path: String, _ bytes: [UInt8], truncate: Bool) throws
    /// open, read sequentially to the end in 64 KiB reads, close. Returns the bytes read.
    @discardableResult func readFile(_ path: String) throws -> Int
    /// open, read the whole file, close; the bytes.
    func readBytes(_ path: String) throws -> [UInt8]
    /// open, read `count` bytes at `offset`, close.
    func readRange(_ path: String, offset: UInt64, count: Int) throws
    /// open for writing without truncation, write `bytes` at `offset`, close.
    func writeRange(_ path: String, offset: UInt64, _ bytes: [UInt8]) throws
    func makeDirectory(_ path: String) throws
    func list(_ path: String) throws -> [String]
    func size(_ path: String) throws -> UInt64
    /// The cache manager's counters now.
    func statistics() throws -> ClientStatistics.Snapshot
}

public let benchIOSize = 64 * 1024

/// A workload's calls made directly on a cache manager.
public struct InProcessFileSystem: BenchFileSystem {
    let client: PathClient

    public init(_ cacheManager: CacheManager) {
        client = PathClient(cacheManager)
    }

    public func writeFile(_ path: String, _ bytes: [UInt8], truncate: Bool) throws {
        let file: PathClient.OpenFile
        do {
            file = try client.open(path, flags: O_RDWR | (truncate ? O_TRUNC : 0))
        } catch let error as FileSystemError where error.errno == ENOENT {
            file = try client.create(path)
        }
        var offset = 0
        while offset < bytes.count {
            let end = min(bytes.count, offset + benchIOSize)
            try file.write(Array(bytes[offset..<end]), offset: UInt64(offset))
            offset = end
        }
        try file.close()
    }

    @discardableResult public func readFile(_ path: String) throws -> Int {
        let file = try client.open(path)
        defer { try? file.close() }
        var total = 0
        while true {
            let chunk = try file.read(offset: UInt64(total), count: benchIOSize)
            if chunk.isEmpty { return total }
            total += chunk.count
        }
    }

    public func readBytes(_ path: String) throws -> [UInt8] { try client.readFile(path) }

    public func readRange(_ path: String, offset: UInt64, count: Int) throws {
        let file = try client.open(path)
        defer { try? file.close() }
        _ = try file.read(offset: offset, count: count)
    }

    public func writeRange(_ path: String, offset: UInt64, _ bytes: [UInt8]) throws {
        let file = try client.open(path, flags: O_RDWR)
        try file.write(bytes, offset: offset)
        try file.close()
    }

    public func makeDirectory(_ path: String) throws { try client.makeDirectory(path) }
    public func list(_ path: String) throws -> [String] { try client.list(path) }
    public func size(_ path: String) throws -> UInt64 { try client.stat(path).size }
    public func statistics() throws -> ClientStatistics.Snapshot { client.cacheManager.statistics.snapshot() }
}

/// A workload's calls as system calls under a directory (a PeachFS mount, or local disk).
public struct MountedFileSystem: BenchFileSystem {
    public let root: String
    /// False for a local directory: no cache manager to ask.
    public let isPeachMount: Bool

    public init(root: String, isPeachMount: Bool = true) {
        self.root = root
        self.isPeachMount = isPeachMount
    }

    func full(_ path: String) -> String { root + (path.hasPrefix("/") ? path : "/" + path) }

    static func check(_ result: Int, _ what: String) throws {
        if result < 0 { throw FileSystemError(errno, what) }
    }

    public func writeFile(_ path: String, _ bytes: [UInt8], truncate: Bool) throws {
        let fd = open(full(path), O_WRONLY | O_CREAT | O_CLOEXEC | (truncate ? O_TRUNC : 0), 0o644)
        try Self.check(Int(fd), "open \(path)")
        var offset = 0
        while offset < bytes.count {
            let end = min(bytes.count, offset + benchIOSize)
            let n = bytes[offset..<end].withUnsafeBytes { Foundation.write(fd, $0.baseAddress, end - offset) }
            if n < 0 { close(fd); try Self.check(n, "write \(path)") }
            offset += n
        }
        try Self.check(Int(close(fd)), "close \(path)")
    }

    @discardableResult public func readFile(_ path: String) throws -> Int {
        let fd = open(full(path), O_RDONLY | O_CLOEXEC)
        try Self.check(Int(fd), "open \(path)")
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: benchIOSize)
        var total = 0
        while true {
            let n = Foundation.read(fd, &buffer, buffer.count)
            try Self.check(n, "read \(path)")
            if n == 0 { return total }
            total += n
        }
    }

    public func readBytes(_ path: String) throws -> [UInt8] {
        do { return Array(try Data(contentsOf: URL(fileURLWithPath: full(path)))) } catch {
            throw FileSystemError(EIO, "read \(path): \(error)")
        }
    }

    public func readRange(_ path: String, offset: UInt64, count: Int) throws {
        let fd = open(full(path), O_RDONLY | O_CLOEXEC)
        try Self.check(Int(fd), "open \(path)")
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: count)
        try Self.check(pread(fd, &buffer, count, off_t(offset)), "read \(path)")
    }

    public func writeRange(_ path: String, offset: UInt64, _ bytes: [UInt8]) throws {
        let fd = open(full(path), O_WRONLY | O_CLOEXEC)
        try Self.check(Int(fd), "open \(path)")
        let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, bytes.count, off_t(offset)) }
        if n < 0 { close(fd); try Self.check(n, "write \(path)") }
        try Self.check(Int(close(fd)), "close \(path)")
    }

    public func makeDirectory(_ path: String) throws { try Self.check(Int(mkdir(full(path), 0o755)), "mkdir \(path)") }

    public func list(_ path: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: full(path))
    }

    public func size(_ path: String) throws -> UInt64 {
        var st = stat()
        try Self.check(Int(stat(full(path), &st)), "stat \(path)")
        return UInt64(st.st_size)
    }

    public func statistics() throws -> ClientStatistics.Snapshot {
        guard isPeachMount else { return ClientStatistics.Snapshot(mode: "local") }
        var buffer = [UInt8](repeating: 0, count: 65536)
        let n = getxattr(root, "user.peach.stats", &buffer, buffer.count)
        try Self.check(n, "peach fs stats \(root)")
        return try JSONDecoder().decode(ClientStatistics.Snapshot.self, from: Data(buffer[0..<n]))
    }
}
