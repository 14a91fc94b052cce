import GRDB
import PeachProtocol

/// The durable promises, in the server's SQLite database. Every function runs inside the caller's
/// transaction so a grant or a break commits together with the change that caused it.
enum CallBackTable {
    static func grant(_ db: Database, client: String, vnodes: [Int64], expiresAt: Int64) throws {
        for vnode in vnodes {
            try db.execute(cached: "INSERT OR REPLACE INTO callBack (client, vnode, expiresAt) VALUES (?, ?, ?)",
                           arguments: [client, vnode, expiresAt])
        }
    }

    /// When `client`'s promise on `vnode` expires (Unix seconds), if it holds one.
    static func expiry(_ db: Database, client: String, vnode: Int64) throws -> Int64? {
        try Int64.fetchOne(db, cached: "SELECT expiresAt FROM callBack WHERE client = ? AND vnode = ?", arguments: [client, vnode])
    }

    /// Deletes every other client's promise on `vnodes` and returns the live ones, by client.
    /// `deleted` names the vnodes the change has deleted already: their rows are gone, and
    /// with them the uniquifier a break must carry (it is random, so it cannot be assumed).
    static func breakAll(_ db: Database, vnodes: [Int64], except client: String, now: Int64,
                         deleted: [FID] = []) throws -> [String: [FID]] {
        guard !vnodes.isEmpty else { return [:] }
        let placeholders = databaseQuestionMarks(count: vnodes.count)
        var arguments = StatementArguments(vnodes)
        arguments += [client]
        let rows = try Row.fetchAll(db, cached: """
            SELECT callBack.client, callBack.vnode, callBack.expiresAt, vnode.uniquifier
            FROM callBack LEFT JOIN vnode ON vnode.id = callBack.vnode
            WHERE callBack.vnode IN (\(placeholders)) AND callBack.client != ?
            """, arguments: arguments)
        try db.execute(cached: "DELETE FROM callBack WHERE vnode IN (\(placeholders)) AND client != ?", arguments: arguments)
        var breaks: [String: [FID]] = [:]
        for row in rows where (row["expiresAt"] as Int64) > now {
            let vnode = UInt64(row["vnode"] as Int64)
            guard let unique = (row["uniquifier"] as Int64?).map(UInt32.init) ?? deleted.first(where: { $0.vnode == vnode })?.unique else {
                continue
            }
            breaks[row["client"], default: []].append(FID(vnode: vnode, unique: unique))
        }
        return breaks
    }

    static func giveUp(_ db: Database, client: String, vnodes: [Int64]) throws {
        for vnode in vnodes {
            try db.execute(cached: "DELETE FROM callBack WHERE client = ? AND vnode = ?", arguments: [client, vnode])
        }
    }

    /// Every promise on these vnodes, whoever holds it (they no longer exist).
    static func forget(_ db: Database, vnodes: [Int64]) throws {
        for vnode in vnodes {
            try db.execute(cached: "DELETE FROM callBack WHERE vnode = ?", arguments: [vnode])
        }
    }

    static func dropAll(_ db: Database, client: String) throws {
        try db.execute(cached: "DELETE FROM callBack WHERE client = ?", arguments: [client])
    }

    static func count(_ db: Database) throws -> Int {
        try Int.fetchOne(db, cached: "SELECT COUNT(*) FROM callBack") ?? 0
    }
}
