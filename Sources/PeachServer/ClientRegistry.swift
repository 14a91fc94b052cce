import NIOConcurrencyHelpers
import Foundation
import NIOCore
import PeachProtocol

/// The connected cache managers, by the client id each sent in Hello. A client that reconnects
/// replaces its older connection. For clients no longer connected it keeps when the server last
/// heard from them: their leases run from there (docs/consistency.md).
final class ClientRegistry: Sendable {
    struct Entry: Sendable {
        var connectionID: UInt64
        var handler: NIOLoopBound<ConnectionHandler>
        /// What `peach admin clients` shows of it.
        var name: String
        var address: String
        var design: ClientDesign
        var connectedSince = Date()
        /// From the last break pushed to it until its acknowledgement.
        var lastBreakNanoseconds: Int64?
    }

    private let connections = NIOLockedValueBox([String: Entry]())
    private let nextID = NIOLockedValueBox<UInt64>(0)
    /// Last contacts of clients no longer connected, and the latest contact among those evicted
    /// to keep the table bounded (a peer can make up client ids).
    private let lastContacts = NIOLockedValueBox<(table: [String: NIODeadline], evictedUpTo: NIODeadline)>(([:], .uptimeNanoseconds(0)))
    /// A client the server has not heard from since it started may have heard from the server's
    /// previous run just before: its lease is counted from this start.
    private let startedAt = NIODeadline.now()
    static let maximumRemembered = 4096

    func newConnectionID() -> UInt64 {
        nextID.withLockedValue { $0 += 1; return $0 }
    }

    func register(_ client: String, _ entry: Entry) {
        connections.withLockedValue { $0[client] = entry }
    }

    /// Forgets `client` if `connectionID` is still the connection registered for it, and keeps
    /// when the server last heard from it.
    func unregister(_ client: String, connectionID: UInt64, lastContact: NIODeadline) {
        connections.withLockedValue { table in
            if table[client]?.connectionID == connectionID { table[client] = nil }
        }
        lastContacts.withLockedValue { contacts in
            contacts.table[client] = max(contacts.table[client] ?? lastContact, lastContact)
            guard contacts.table.count > Self.maximumRemembered else { return }
            // Forget the older half. A forgotten client counts as last heard at the latest of
            // them: later than the truth, so its lease is never cut short.
            let sorted = contacts.table.sorted { $0.value < $1.value }
            let evicted = sorted.prefix(sorted.count / 2)
            contacts.evictedUpTo = max(contacts.evictedUpTo, evicted.last!.value)
            for (id, _) in evicted { contacts.table[id] = nil }
        }
    }

    /// Departed clients remembered now (tests).
    var rememberedCount: Int { lastContacts.withLockedValue { $0.table.count } }

    /// When the server last heard from a client that is not connected (at worst, later).
    func lastContact(of client: String) -> NIODeadline {
        lastContacts.withLockedValue { $0.table[client] ?? max(startedAt, $0.evictedUpTo) }
    }

    func connection(for client: String) -> NIOLoopBound<ConnectionHandler>? {
        connections.withLockedValue { $0[client]?.handler }
    }

    /// A break to `client` was acknowledged `nanoseconds` after it was pushed.
    func recordBreak(to client: String, nanoseconds: Int64) {
        connections.withLockedValue { $0[client]?.lastBreakNanoseconds = nanoseconds }
    }

    /// The connected clients, by id.
    func connectedClients() -> [String: Entry] { connections.withLockedValue { $0 } }
}
