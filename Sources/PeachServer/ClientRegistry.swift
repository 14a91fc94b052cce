import NIOConcurrencyHelpers
import NIOCore

/// The connected cache managers, by the client id each sent in Hello. A client that reconnects
/// replaces its older connection.
final class ClientRegistry: Sendable {
    struct Entry: Sendable {
        var connectionID: UInt64
        var handler: NIOLoopBound<ConnectionHandler>
    }

    private let connections = NIOLockedValueBox([String: Entry]())
    private let nextID = NIOLockedValueBox<UInt64>(0)

    func newConnectionID() -> UInt64 {
        nextID.withLockedValue { $0 += 1; return $0 }
    }

    func register(_ client: String, _ entry: Entry) {
        connections.withLockedValue { $0[client] = entry }
    }

    /// Forgets `client` if `connectionID` is still the connection registered for it.
    func unregister(_ client: String, connectionID: UInt64) {
        connections.withLockedValue { table in
            if table[client]?.connectionID == connectionID { table[client] = nil }
        }
    }

    func connection(for client: String) -> NIOLoopBound<ConnectionHandler>? {
        connections.withLockedValue { $0[client]?.handler }
    }
}
