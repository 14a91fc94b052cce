import Foundation
import PeachClient

/// One measured phase of one workload for one design.
public struct Measurement: Codable, Sendable {
    public var serverRequests: Int
    public var fetchedBytes: UInt64
    public var storedBytes: UInt64
    /// Share of the bytes the workload read that needed no transfer; nil for write workloads.
    public var hitRate: Double?
    public var seconds: Double
    public var rpcs: [String: Int]

    public var bytesMoved: UInt64 { fetchedBytes + storedBytes }

    public init(delta: ClientStatistics.Snapshot, seconds: Double, applicationBytesRead: UInt64?) {
        serverRequests = delta.serverRequests
        fetchedBytes = delta.fetchedBytes
        storedBytes = delta.storedBytes
        rpcs = delta.rpcs
        self.seconds = seconds
        if let read = applicationBytesRead, read > 0 {
            hitRate = max(0, 1 - Double(delta.fetchedBytes) / Double(read))
        } else {
            hitRate = nil
        }
    }
}

/// Runs `body` between two snapshots of `fileSystem`'s counters.
func measure(_ fileSystem: BenchFileSystem, applicationBytesRead: UInt64?, _ body: () throws -> Void) throws -> Measurement {
    let before = try fileSystem.statistics()
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    let after = try fileSystem.statistics()
    return Measurement(delta: after.since(before), seconds: seconds, applicationBytesRead: applicationBytesRead)
}

/// A progress line on stderr, only when stderr is a terminal.
public struct Progress: Sendable {
    let enabled = isatty(2) != 0

    public init() {}

    public func show(_ text: String) {
        guard enabled else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[K\(text)".utf8))
    }

    public func done() {
        guard enabled else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
    }
}

/// Deterministic file content: a repeating pattern that differs per seed (no compression tricks
/// matter here, and runs repeat exactly).
func content(_ size: Int, seed: UInt8) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: size)
    var x = UInt32(seed) &* 2_654_435_761 | 1
    for i in 0..<size {
        x ^= x << 13
        x ^= x >> 17
        x ^= x << 5
        bytes[i] = UInt8(truncatingIfNeeded: x)
    }
    return bytes
}
