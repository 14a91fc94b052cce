import GRDB
import PeachProtocol

/// The client table's life: when a client was last heard from, and forgetting clients that went
/// away long ago, with their recorded replies, so that client ids that come and go cannot grow
/// the database for ever.
extension VolumeStore {
    /// Clients forgotten in one sweep at most: one short transaction, the rest at the next.
    static let forgetBatch = 1000

    /// Notes that `client` was heard from now (its connection just closed).
    public func noteLastSeen(client: String) throws {
        try writeTransaction { db in
            try db.execute(cached: "UPDATE client SET lastSeen = ? WHERE id = ?", arguments: [Timespec.now().seconds, client])
        }
    }

    /// Forgets the clients last heard from before `cutoff` (Unix seconds) that are not in
    /// `connected`: their row, their recorded replies and their promises. Safe once `cutoff` is
    /// older than a promise's life: such a client trusts nothing it cached when it returns (its
    /// lease lapsed, its promises expired), and it comes back as a new client. Returns how many.
    public func forgetClients(silentSince cutoff: Int64, except connected: Set<String>) throws -> Int {
        try writeTransaction { db in
            let stale = try String.fetchAll(db, sql: "SELECT id FROM client WHERE lastSeen < ? ORDER BY lastSeen LIMIT ?",
                                            arguments: [cutoff, Self.forgetBatch + connected.count])
                .filter { !connected.contains($0) }.prefix(Self.forgetBatch)
            for id in stale {
                try db.execute(cached: "DELETE FROM replay WHERE client = ?", arguments: [id])
                try db.execute(cached: "DELETE FROM callBack WHERE client = ?", arguments: [id])
                try db.execute(cached: "DELETE FROM client WHERE id = ?", arguments: [id])
            }
            return stale.count
        }
    }

    /// Rows of the client and replay tables (tests, `admin stats`).
    public func clientTableRows() throws -> (clients: Int, replies: Int) {
        try database.read { db in
            (try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM client") ?? 0, try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM replay") ?? 0)
        }
    }
}
