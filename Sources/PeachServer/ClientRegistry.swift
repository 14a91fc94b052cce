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
        /// It gave every promise up (GiveUpAllCallBacks): once it leaves, no change waits for it.
        var saidFarewell = false
    }

    /// The last contact recorded for a client that said farewell before leaving: its lease is
    /// over at once.
    private static let farewell = NIODeadline.uptimeNanoseconds(0)

    private let connections = NIOLockedValueBox([String: Entry]())
    /// Breaks waiting for a client that is not connected to come back (`whenConnected`), by
    /// client; each runs once, at the client's next registration, unless taken back first.
    private let waiters = NIOLockedValueBox([String: [(id: UInt64, resume: @Sendable () -> Void)]]())
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
        let resumed = waiters.withLockedValue { $0.removeValue(forKey: client) } ?? []
        for waiter in resumed { waiter.resume() }
    }

    /// `client`'s connection, or nil after arranging for `resume` to run when it next registers
    /// (checked and arranged at once, so a registration in between is not missed). Returns the
    /// id that `cancelWaiting` takes.
    func connection(for client: String, orWhenConnected resume: @escaping @Sendable () -> Void) -> (NIOLoopBound<ConnectionHandler>?, UInt64) {
        let id = newConnectionID()
        return waiters.withLockedValue { waiting in
            // The connection table is read inside the waiters' lock, and register() writes it
            // before it takes that lock: a client registered after this read finds the waiter.
            if let handler = connection(for: client) { return (handler, id) }
            waiting[client, default: []].append((id, resume))
            return (nil, id)
        }
    }

    /// Takes back a waiter; false when it has run (or is about to) already.
    func cancelWaiting(_ client: String, id: UInt64) -> Bool {
        waiters.withLockedValue { waiting in
            guard let index = waiting[client]?.firstIndex(where: { $0.id == id }) else { return false }
            waiting[client]!.remove(at: index)
            if waiting[client]!.isEmpty { waiting[client] = nil }
            return true
        }
    }

    /// Forgets `client` if `connectionID` is still the connection registered for it, and keeps
    /// when the server last heard from it.
    func unregister(_ client: String, connectionID: UInt64, lastContact: NIODeadline) {
        let departed = connections.withLockedValue { table -> Bool in
            guard let entry = table[client], entry.connectionID == connectionID else { return false }
            table[client] = nil
            return entry.saidFarewell
        }
        lastContacts.withLockedValue { contacts in
            contacts.table[client] = departed ? Self.farewell : max(contacts.table[client] ?? lastContact, lastContact)
            guard contacts.table.count > Self.maximumRemembered else { return }
            // Forget the older half. A forgotten client counts as last heard at the latest of
            // them: later than the truth, so its lease is never cut short.
            let sorted = contacts.table.sorted { $0.value < $1.value }
            let evicted = sorted.prefix(sorted.count / 2)
            contacts.evictedUpTo = max(contacts.evictedUpTo, evicted.last!.value)
            for (id, _) in evicted { contacts.table[id] = nil }
        }
    }

    /// `client` gave every promise up over `connectionID` (`Entry.saidFarewell`).
    func noteFarewell(_ client: String, connectionID: UInt64) {
        connections.withLockedValue { table in
            if table[client]?.connectionID == connectionID { table[client]?.saidFarewell = true }
        }
    }

    /// Whether `client` left after a farewell (and has not come back).
    func saidFarewell(_ client: String) -> Bool {
        lastContacts.withLockedValue { $0.table[client] == Self.farewell }
            && connections.withLockedValue { $0[client] == nil }
    }

    /// Departed clients remembered now (tests).
    var rememberedCount: Int { lastContacts.withLockedValue { $0.table.count } }

    /// When the server last heard from a client that is not connected (at worst, later).
    func lastContact(of client: String) -> NIODeadline {
        lastContacts.withLockedValue { $0.table[client] ?? max(startedAt, $0.evictedUpTo) }
    }

    func connectionID(for client: String) -> UInt64? {
        connections.withLockedValue { $0[client]?.connectionID }
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
