import Foundation
import PeachProtocol
import Synchronization

/// A cache manager's counters. The keys of `Snapshot` are a contract (docs/architecture.md):
/// both client designs fill them with the same meaning.
public final class ClientStatistics: Sendable {
    public struct Snapshot: Codable, Sendable, Equatable {
        public var mode: String
        public var opens = 0
        /// Opens that needed no server request.
        public var openHits = 0
        public var reads = 0
        /// Bytes returned by read requests the cache manager served.
        public var readBytes: UInt64 = 0
        /// Of those, bytes whose data was cached and valid when the file was opened.
        public var readHitBytes: UInt64 = 0
        public var writes = 0
        public var writeBytes: UInt64 = 0
        public var fetches = 0
        public var fetchedBytes: UInt64 = 0
        public var stores = 0
        /// Stores made after their close returned (`peach fs storebehind`).
        public var storesBehind = 0
        public var storedBytes: UInt64 = 0
        /// Callback breaks received from the server (FIDs).
        public var callbacksReceived = 0
        public var evictions = 0
        public var cacheBytes: UInt64 = 0
        /// Files and directories the cache manager keeps state for now (bounded by the kernel's
        /// inodes on a mount, where forgotten ones go).
        public var vnodes = 0
        /// Dirty copies kept aside because the server had moved past the version they were based
        /// on (`peach fs conflicts`), as now.
        public var conflicts = 0
        public var serverRequests = 0
        /// Pings sent to keep the lease of an idle connection (not in `serverRequests`).
        public var pings = 0
        /// False from a failed attempt to reach the server until it answers again.
        public var serverReachable = true
        /// Opens served from the cache while the server was away (`--offline-reads`): possibly stale.
        public var offlineOpens = 0
        /// Opens of files larger than the cache, read through without caching them.
        public var readThroughOpens = 0
        /// Request type → count.
        public var rpcs: [String: Int] = [:]

        public init(mode: String) {
            self.mode = mode
        }

        /// What happened between `earlier` and this snapshot (counters subtracted; `cacheBytes` as now).
        public func since(_ earlier: Snapshot) -> Snapshot {
            var d = self
            d.opens -= earlier.opens
            d.openHits -= earlier.openHits
            d.reads -= earlier.reads
            d.readBytes -= earlier.readBytes
            d.readHitBytes -= earlier.readHitBytes
            d.writes -= earlier.writes
            d.writeBytes -= earlier.writeBytes
            d.fetches -= earlier.fetches
            d.fetchedBytes -= earlier.fetchedBytes
            d.stores -= earlier.stores
            d.storedBytes -= earlier.storedBytes
            d.callbacksReceived -= earlier.callbacksReceived
            d.evictions -= earlier.evictions
            d.serverRequests -= earlier.serverRequests
            d.pings -= earlier.pings
            d.offlineOpens -= earlier.offlineOpens
            d.readThroughOpens -= earlier.readThroughOpens
            d.rpcs = rpcs.merging(earlier.rpcs.mapValues { -$0 }, uniquingKeysWith: +).filter { $0.value != 0 }
            return d
        }
    }

    private let state: Mutex<Snapshot>
    /// The same counters as metrics, for `peach mount --metrics`.
    let metrics: ClientMetrics

    public init(mode: String) {
        state = Mutex(Snapshot(mode: mode))
        metrics = ClientMetrics(mode: mode)
    }

    public func update(_ body: (inout Snapshot) -> Void) {
        state.withLock { body(&$0) }
    }

    /// Publishes the counters as metrics (`peach mount --metrics` calls it before each scrape).
    public func publishMetrics() { metrics.publish(snapshot()) }

    func countRequest(_ opcode: Opcode) {
        state.withLock {
            $0.serverRequests += 1
            $0.rpcs[opcode.name, default: 0] += 1
        }
    }

    public func snapshot() -> Snapshot { state.withLock { $0 } }

    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return String(decoding: (try? encoder.encode(snapshot())) ?? Data(), as: UTF8.self)
    }
}
