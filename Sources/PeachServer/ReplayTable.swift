import Foundation
import GRDB
import NIOCore
import PeachProtocol

/// The replies of numbered requests (`RequestNumber`), kept in the transaction of the change
/// they report, so that a request repeated after a lost connection or a server restart is
/// answered, not carried out again. Unlike NFS's duplicate request cache, in memory, this
/// survives a crash of the server.
enum ReplayTable {
    /// A repeat: the reply recorded the first time.
    struct Replayed: Error {
        var reply: Reply
    }

    /// Rows kept per client at most: a client has at most this many numbered requests in flight.
    static let maximumPerClient = 1024

    /// Throws `Replayed` when `number` was carried out already; forgets what the client settled.
    static func check(_ db: Database, client: String, number: RequestNumber, opcode: Opcode) throws {
        let sequence = Int64(bitPattern: number.sequence)
        try db.execute(cached: "DELETE FROM replay WHERE client = ? AND sequence < ?",
                       arguments: [client, Int64(bitPattern: number.settledBelow)])
        guard let bytes = try Data.fetchOne(db, cached: "SELECT reply FROM replay WHERE client = ? AND sequence = ?",
                                            arguments: [client, sequence]) else { return }
        guard case .success(let reply) = try ReplyCodec.decode(opcode: opcode.rawValue, body: ByteBuffer(bytes: bytes)) else {
            throw StatusCode.ioError
        }
        throw Replayed(reply: reply)
    }

    /// Records the reply of `number`.
    static func record(_ db: Database, client: String, number: RequestNumber, reply: Reply) throws {
        var buffer = ByteBuffer()
        ReplyCodec.encode(reply, into: &buffer)
        try db.execute(cached: "INSERT OR REPLACE INTO replay (client, sequence, reply) VALUES (?, ?, ?)",
                       arguments: [client, Int64(bitPattern: number.sequence), Data(buffer.readableBytesView)])
        // A client that never settles cannot grow the table without bound.
        try db.execute(cached: """
            DELETE FROM replay WHERE client = ? AND sequence <= (
                SELECT sequence FROM replay WHERE client = ? ORDER BY sequence DESC LIMIT 1 OFFSET ?)
            """, arguments: [client, client, maximumPerClient])
    }

    /// A client that restarted numbers from 1 again.
    static func forget(_ db: Database, client: String) throws {
        try db.execute(cached: "DELETE FROM replay WHERE client = ?", arguments: [client])
    }
}
