import Foundation
import NIOConcurrencyHelpers
import PeachProtocol

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
        public var storedBytes: UInt64 = 0
        /// Callback breaks received from the server (FIDs).
        public var callbacksReceived = 0
        public var evictions = 0
        public var cacheBytes: UInt64 = 0
        public var serverRequests = 0
        /// Request type → count.
        public var rpcs: [String: Int] = [:]

        public var readHitRate: Double { readBytes == 0 ? 0 : Double(readHitBytes) / Double(readBytes) }
    }

    private let state: NIOLockedValueBox<Snapshot>

    public init(mode: String) {
        state = NIOLockedValueBox(Snapshot(mode: mode))
    }

    public func update(_ body: (inout Snapshot) -> Void) {
        state.withLockedValue { body(&$0) }
    }

    func countRequest(_ opcode: Opcode) {
        state.withLockedValue {
            $0.serverRequests += 1
            $0.rpcs[opcode.name, default: 0] += 1
        }
    }

    public func snapshot() -> Snapshot { state.withLockedValue { $0 } }

    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return String(decoding: (try? encoder.encode(snapshot())) ?? Data(), as: UTF8.self)
    }
}
