import Foundation

/// An operator's question to the server (`peach admin`, docs/operations.md).
public enum AdminQuery: Hashable, Sendable {
    /// The cache managers connected, and those that hold promises while away.
    case clients
    /// The promises on `path` and everything beneath it (empty: the whole volume), held by
    /// `client` (empty: any client).
    case callBacks(path: String, client: String)
    /// The server's counters.
    case statistics
    /// A consistent snapshot of the volume: a tar archive sent after the reply.
    case backup

    /// The query's byte on the wire.
    var kind: UInt8 {
        switch self {
        case .clients: 1
        case .callBacks: 2
        case .statistics: 3
        case .backup: 4
        }
    }
}

/// The reports, sent as JSON inside an `adminReport` reply. Times are Unix seconds.
public enum AdminReports {
    /// The most rows one report carries; the rest are counted in `omitted` (a reply is one frame).
    public static let maximumRows = 10_000

    public struct Client: Codable, Sendable, Equatable {
        public var id: String
        /// The certificate's machine name, "localhost" for root on the server's machine, the
        /// local user, or the address of an unauthenticated peer.
        public var name: String
        /// The peer's address while connected.
        public var address: String?
        /// afs or nfs, while connected.
        public var design: String?
        public var connectedSince: Double?
        /// When the server last heard from it (for one not connected: at worst, later).
        public var lastSeen: Double?
        public var callBacksHeld: Int
        /// From the last break pushed to it until its acknowledgement.
        public var lastBreakMilliseconds: Double?
        public var reachable: Bool

        public init(id: String, name: String, address: String?, design: String?, connectedSince: Double?, lastSeen: Double?,
                    callBacksHeld: Int, lastBreakMilliseconds: Double?, reachable: Bool) {
            self.id = id
            self.name = name
            self.address = address
            self.design = design
            self.connectedSince = connectedSince
            self.lastSeen = lastSeen
            self.callBacksHeld = callBacksHeld
            self.lastBreakMilliseconds = lastBreakMilliseconds
            self.reachable = reachable
        }
    }

    public struct Clients: Codable, Sendable, Equatable {
        public var clients: [Client]
        public var omitted: Int
        public init(clients: [Client], omitted: Int) {
            self.clients = clients
            self.omitted = omitted
        }
    }

    public struct CallBack: Codable, Sendable, Equatable {
        public var client: String
        /// The file's FID, as `volume.vnode.uniquifier`.
        public var fid: String
        /// A path of the file from the volume's root ("/" for the root; one name of a hard link).
        public var path: String
        public var expiresAt: Double

        public init(client: String, fid: String, path: String, expiresAt: Double) {
            self.client = client
            self.fid = fid
            self.path = path
            self.expiresAt = expiresAt
        }
    }

    public struct CallBacks: Codable, Sendable, Equatable {
        public var callBacks: [CallBack]
        public var omitted: Int
        public init(callBacks: [CallBack], omitted: Int) {
            self.callBacks = callBacks
            self.omitted = omitted
        }
    }

    public struct Statistics: Codable, Sendable, Equatable {
        public var epoch: UInt64
        public var startedAt: Double
        /// Requests answered since the start, by operation.
        public var requests: [String: Int]
        public var callBacksBroken: Int
        public var breakMessagesSent: Int
        public var clientsDeclaredUnreachable: Int
        public var callBacksHeld: Int
        public var clientsConnected: Int
        public var volumeBytes: Int64
        public var volumeFiles: Int64
        /// Small files whose content is in the volume's database, and their bytes (nil from a
        /// server older than inline storage).
        public var inlineFiles: Int64?
        public var inlineBytes: Int64?

        public init(epoch: UInt64, startedAt: Double, requests: [String: Int], callBacksBroken: Int, breakMessagesSent: Int,
                    clientsDeclaredUnreachable: Int, callBacksHeld: Int, clientsConnected: Int, volumeBytes: Int64, volumeFiles: Int64,
                    inlineFiles: Int64? = nil, inlineBytes: Int64? = nil) {
            self.epoch = epoch
            self.startedAt = startedAt
            self.requests = requests
            self.callBacksBroken = callBacksBroken
            self.breakMessagesSent = breakMessagesSent
            self.clientsDeclaredUnreachable = clientsDeclaredUnreachable
            self.callBacksHeld = callBacksHeld
            self.clientsConnected = clientsConnected
            self.volumeBytes = volumeBytes
            self.volumeFiles = volumeFiles
            self.inlineFiles = inlineFiles
            self.inlineBytes = inlineBytes
        }
    }

    public static func encode<T: Encodable>(_ report: T) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Array((try? encoder.encode(report)) ?? Data())
    }

    public static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        try JSONDecoder().decode(type, from: Data(bytes))
    }
}
