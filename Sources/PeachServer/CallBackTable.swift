import GRDB
import PeachProtocol

/// The durable promises, in the server's SQLite database. Every function runs inside the caller's
/// transaction so a grant or a break commits together with the change that caused it.
///
/// A row is a live promise while `brokenUniquifier` is NULL. A break marks the row (with the
/// FID's uniquifier, as the vnode may be gone) instead of deleting it; the row goes when the
/// client acknowledges the break (`settle`), loses every promise (`dropAll`), or makes a new
/// one (`grant`). Until then the client may still trust the promise: a later change to the
/// same vnode waits for it again, a server restarted after a crash still knows of it, and the
/// client's next Hello says that its promises are lost (docs/consistency.md).
enum CallBackTable {
    /// Records `client`'s promise on each of `vnodes` until `expiresAt` (a new one, or a broken
    /// or older one renewed). A live promise that already runs to `expiresAt` (granted earlier in
    /// the same second: a directory a burst of creates changes, a file a loop of chmods does) is
    /// left as it is, so the transaction writes no page for it.
    static func grant(_ db: Database, client: String, vnodes: [Int64], expiresAt: Int64) throws {
        for vnode in vnodes {
            try db.execute(cached: """
                INSERT INTO callBack (client, vnode, expiresAt) VALUES (?, ?, ?)
                ON CONFLICT (client, vnode) DO UPDATE SET expiresAt = excluded.expiresAt, brokenUniquifier = NULL
                WHERE callBack.expiresAt != excluded.expiresAt OR callBack.brokenUniquifier IS NOT NULL
                """, arguments: [client, vnode, expiresAt])
        }
    }

    /// When `client`'s live promise on `vnode` expires (Unix seconds), if it holds one.
    static func expiry(_ db: Database, client: String, vnode: Int64) throws -> Int64? {
        try Int64.fetchOne(db, cached: "SELECT expiresAt FROM callBack WHERE client = ? AND vnode = ? AND brokenUniquifier IS NULL",
                           arguments: [client, vnode])
    }

    /// Marks every other client's promise on `vnodes` broken and returns those that have not
    /// expired, by client: the live ones and the ones broken earlier and not yet acknowledged.
    /// `deleted` names the vnodes the change has deleted already: their rows in `vnode` are gone,
    /// and with them the uniquifier a break must carry (it is random, so it cannot be assumed).
    static func breakAll(_ db: Database, vnodes: [Int64], except client: String, now: Int64,
                         deleted: [FID] = []) throws -> [String: [FID]] {
        guard !vnodes.isEmpty else { return [:] }
        let placeholders = databaseQuestionMarks(count: vnodes.count)
        var arguments = StatementArguments(vnodes)
        arguments += [client]
        let rows = try Row.fetchAll(db, cached: """
            SELECT callBack.client, callBack.vnode, callBack.expiresAt, callBack.brokenUniquifier, vnode.uniquifier
            FROM callBack LEFT JOIN vnode ON vnode.id = callBack.vnode
            WHERE callBack.vnode IN (\(placeholders)) AND callBack.client != ?
            """, arguments: arguments)
        var breaks: [String: [FID]] = [:]
        for row in rows {
            let (holder, vnode): (String, Int64) = (row["client"], row["vnode"])
            let known = (row["brokenUniquifier"] as Int64?) ?? (row["uniquifier"] as Int64?)
            guard (row["expiresAt"] as Int64) > now,
                  let unique = known.map(UInt32.init) ?? deleted.first(where: { $0.vnode == UInt64(vnode) })?.unique else {
                // Expired, or a FID nobody can name: no promise left to break.
                try db.execute(cached: "DELETE FROM callBack WHERE client = ? AND vnode = ?", arguments: [holder, vnode])
                continue
            }
            if row["brokenUniquifier"] as Int64? == nil {
                try db.execute(cached: "UPDATE callBack SET brokenUniquifier = ? WHERE client = ? AND vnode = ?",
                               arguments: [Int64(unique), holder, vnode])
            }
            breaks[holder, default: []].append(FID(vnode: UInt64(vnode), unique: unique))
        }
        return breaks
    }

    /// `client` acknowledged breaks of `fids`: those promises are gone (a promise it took since
    /// stays).
    static func settle(_ db: Database, client: String, fids: [FID]) throws {
        for fid in fids {
            try db.execute(cached: "DELETE FROM callBack WHERE client = ? AND vnode = ? AND brokenUniquifier IS NOT NULL",
                           arguments: [client, Int64(clamping: fid.vnode)])
        }
    }

    /// Whether `client` has a broken promise it has not acknowledged.
    static func hasUnsettledBreaks(_ db: Database, client: String) throws -> Bool {
        try Bool.fetchOne(db, cached: "SELECT EXISTS (SELECT 1 FROM callBack WHERE client = ? AND brokenUniquifier IS NOT NULL)",
                          arguments: [client]) ?? false
    }

    /// Every broken promise not yet acknowledged and not expired, of clients other than `client`.
    static func unsettledBreaks(_ db: Database, except client: String, now: Int64) throws -> [String: [FID]] {
        let rows = try Row.fetchAll(db, cached: """
            SELECT client, vnode, brokenUniquifier FROM callBack
            WHERE brokenUniquifier IS NOT NULL AND client != ? AND expiresAt > ?
            """, arguments: [client, now])
        var breaks: [String: [FID]] = [:]
        for row in rows {
            breaks[row["client"], default: []].append(FID(vnode: UInt64(row["vnode"] as Int64), unique: UInt32(row["brokenUniquifier"] as Int64)))
        }
        return breaks
    }

    static func giveUp(_ db: Database, client: String, vnodes: [Int64]) throws {
        for vnode in vnodes {
            try db.execute(cached: "DELETE FROM callBack WHERE client = ? AND vnode = ?", arguments: [client, vnode])
        }
    }

    /// The live promises on these vnodes, which no longer exist (the caller's own: the other
    /// clients' were just broken and wait for their acknowledgements).
    static func forget(_ db: Database, vnodes: [Int64]) throws {
        for vnode in vnodes {
            try db.execute(cached: "DELETE FROM callBack WHERE vnode = ? AND brokenUniquifier IS NULL", arguments: [vnode])
        }
    }

    static func dropAll(_ db: Database, client: String) throws {
        try db.execute(cached: "DELETE FROM callBack WHERE client = ?", arguments: [client])
    }

    /// Live promises.
    static func count(_ db: Database) throws -> Int {
        try Int.fetchOne(db, cached: "SELECT COUNT(*) FROM callBack WHERE brokenUniquifier IS NULL") ?? 0
    }
}
