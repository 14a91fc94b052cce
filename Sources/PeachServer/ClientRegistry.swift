import NIOConcurrencyHelpers
import NIOCore

/// The connected cache managers, by the client id each sent in Hello. A client that reconnects
/// replaces its older connection. For clients no longer connected it keeps when the server last
/// heard from them: their leases run from there (docs/consistency.md).
final class ClientRegistry: Sendable {
    struct Entry: Sendable {
        var connectionID: UInt64
        var handler: NIOLoopBound<ConnectionHandler>
    }

    private let connections = NIOLockedValueBox([String: Entry]())
    private let nextID = NIOLockedValueBox<UInt64>(0)
    private let lastContacts = NIOLockedValueBox([String: NIODeadline]())
    /// A client the server has not heard from since it started may have heard from the server's
    /// previous run just before: its lease is counted from this start.
    private let startedAt = NIODeadline.now()

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
        lastContacts.withLockedValue { table in
            table[client] = max(table[client] ?? lastContact, lastContact)
            // Bounded: entries older than any lease are of no use.
            if table.count > 4096 {
                let horizon = NIODeadline.now() - .hours(1)
                table = table.filter { $0.value > horizon }
            }
        }
    }

    /// When the server last heard from a client that is not connected.
    func lastContact(of client: String) -> NIODeadline {
        lastContacts.withLockedValue { $0[client] } ?? startedAt
    }

    func connection(for client: String) -> NIOLoopBound<ConnectionHandler>? {
        connections.withLockedValue { $0[client]?.handler }
    }
}
