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
            for id in stale { try Self.forget(db, client: id) }
            return stale.count
        }
    }

    /// Before a new id of `owner` is recorded: if the principal has `maximum` ids already, its
    /// longest-silent ones that are not connected and hold no live promise (broken or not) are
    /// forgotten to make room. Forgetting them is safe as it is after `forgetClientsAfter`: such
    /// a client trusts nothing it cached, and its Hello comes back as a new client's.
    static func makeRoomForClientID(_ db: Database, owner: String, maximum: Int, now: Int64,
                                    isConnected: (String) -> Bool) throws {
        guard maximum < .max else { return }
        let count = try Int.fetchOne(db, cached: "SELECT COUNT(*) FROM client WHERE owner = ?", arguments: [owner]) ?? 0
        guard count >= maximum else { return }
        let needed = count - maximum + 1
        let candidates = try String.fetchAll(db, sql: """
            SELECT id FROM client WHERE owner = ?
                AND NOT EXISTS (SELECT 1 FROM callBack WHERE callBack.client = client.id AND callBack.expiresAt > ?)
            ORDER BY lastSeen LIMIT ?
            """, arguments: [owner, now, needed + 64])
            .filter { !isConnected($0) }.prefix(needed)
        guard candidates.count == needed else { throw StatusCode.busy }
        for id in candidates { try forget(db, client: id) }
    }

    /// A client's row, its recorded replies and its promises.
    private static func forget(_ db: Database, client id: String) throws {
        try db.execute(cached: "DELETE FROM replay WHERE client = ?", arguments: [id])
        try db.execute(cached: "DELETE FROM callBack WHERE client = ?", arguments: [id])
        try db.execute(cached: "DELETE FROM client WHERE id = ?", arguments: [id])
    }

    /// The principal that introduced `client` (`Principal.ownerKey`), if it is known.
    func owner(ofClient client: String) throws -> String? {
        try database.read { db in
            try String.fetchOne(db, cached: "SELECT owner FROM client WHERE id = ?", arguments: [client])
        }
    }

    /// Rows of the client and replay tables (tests, `admin stats`).
    public func clientTableRows() throws -> (clients: Int, replies: Int) {
        try database.read { db in
            (try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM client") ?? 0, try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM replay") ?? 0)
        }
    }
}
