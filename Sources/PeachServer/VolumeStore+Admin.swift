import Foundation
import GRDB
import PeachProtocol

/// What `peach admin` reads from the database: who holds promises on what, and by path.
extension VolumeStore {
    /// The root directory's vnode number (the first vnode the volume made).
    static let rootVnode: Int64 = 1

    /// The clients holding promises: how many each holds, counted as `callBacks(under:)` lists
    /// them (unexpired, on files that still exist), and when it was last seen (Unix seconds).
    public func callBackHolders() throws -> [String: (count: Int, lastSeen: Int64)] {
        let now = Timespec.now().seconds
        return try database.read { db in
            var holders: [String: (count: Int, lastSeen: Int64)] = [:]
            for row in try Row.fetchAll(db, sql: """
                SELECT c.client, COUNT(*) AS n, cl.lastSeen FROM callBack c JOIN vnode v ON v.id = c.vnode
                    JOIN client cl ON cl.id = c.client
                WHERE c.expiresAt > ? AND c.brokenUniquifier IS NULL GROUP BY c.client
                """, arguments: [now]) {
                holders[row["client"]] = (row["n"], row["lastSeen"])
            }
            return holders
        }
    }

    /// The unexpired promises on the object at `path` and everything beneath it (empty or "/":
    /// the whole volume), held by `client` (empty: anyone), at most `limit`; `omitted` counts
    /// the rest exactly.
    public func callBacks(under path: String, client: String, limit: Int = AdminReports.maximumRows) throws -> AdminReports.CallBacks {
        let now = Timespec.now().seconds
        return try database.read { db in
            let top = try Self.vnode(db, at: path)
            let clientFilter = client.isEmpty ? "" : " AND c.client = :client"
            let scope = top == Self.rootVnode ? "" : """
                AND c.vnode IN (WITH RECURSIVE under(id) AS (SELECT :top UNION SELECT d.child FROM dirEntry d JOIN under u ON d.directory = u.id)
                                SELECT id FROM under)
                """
            let matching = """
                FROM callBack c JOIN vnode v ON v.id = c.vnode
                WHERE c.expiresAt > :now AND c.brokenUniquifier IS NULL\(clientFilter) \(scope)
                """
            let arguments: StatementArguments = ["now": now, "client": client, "top": top, "limit": limit]
            let rows = try Row.fetchAll(db, sql: "SELECT c.client, c.vnode, v.uniquifier, c.expiresAt \(matching) ORDER BY c.vnode, c.client LIMIT :limit",
                                        arguments: arguments)
            let total = try Int.fetchOne(db, sql: "SELECT COUNT(*) \(matching)", arguments: arguments) ?? rows.count
            let omitted = max(0, total - rows.count)
            var paths = PathNamer()
            let callBacks = try rows.map { row in
                let vnode: Int64 = row["vnode"]
                let fid = FID(volume: 1, vnode: UInt64(vnode), unique: row["uniquifier"])
                return AdminReports.CallBack(client: row["client"], fid: "\(fid)", path: try paths.path(db, of: vnode),
                                             expiresAt: Double(row["expiresAt"] as Int64))
            }
            return AdminReports.CallBacks(callBacks: callBacks, omitted: omitted)
        }
    }

    /// The vnode at `path`, walked name by name from the root.
    static func vnode(_ db: Database, at path: String) throws -> Int64 {
        var current = rootVnode
        for name in path.split(separator: "/") where name != "." {
            guard let next = try VnodeTable.lookup(db, directory: current, name: String(name)) else { throw StatusCode.notFound }
            current = next
        }
        return current
    }
}

/// Names vnodes by a path from the root, remembering directories' paths along the way.
struct PathNamer {
    private var known: [Int64: String] = [VolumeStore.rootVnode: "/"]
    /// Deeper trees are named from the deepest ancestor reached (a peer can make any depth).
    static let maximumDepth = 4096

    mutating func path(_ db: Database, of vnode: Int64) throws -> String {
        // Up the tree, one of each object's names (a hard link has several), to a known path.
        var names: [(vnode: Int64, name: String)] = []
        var current = vnode
        var prefix: String
        while true {
            if let path = known[current] { prefix = path; break }
            guard names.count < Self.maximumDepth,
                  let row = try Row.fetchOne(db, cached: "SELECT directory, name FROM dirEntry WHERE child = ? LIMIT 1", arguments: [current])
            else {
                // Removed while still open, or too deep to name.
                prefix = names.isEmpty ? "(vnode \(vnode), no name)" : "…"
                break
            }
            names.append((current, row["name"]))
            current = row["directory"]
        }
        for (object, name) in names.reversed() {
            prefix = (prefix == "/" ? "" : prefix) + "/" + name
            if known.count < 100_000 { known[object] = prefix }
        }
        return prefix
    }
}
