import NIOConcurrencyHelpers
import PeachProtocol

/// The server's own counters: requests by type, callbacks broken, unreachable clients.
public final class ServerStatistics: Sendable {
    public struct Snapshot: Sendable, Codable, Equatable {
        public var requests: [String: Int] = [:]
        public var callBacksBroken = 0
        public var breakMessagesSent = 0
        public var clientsDeclaredUnreachable = 0
        /// Breaks that had to wait for a client not connected and still within its lease.
        public var breaksWaitingForAbsentClients = 0
        /// Requests an event loop answered itself (`ConnectionHandler.dispatch`).
        public var answeredOnEventLoop = 0
    }

    private let state = NIOLockedValueBox(Snapshot())
    /// Connection handlers alive: one per open connection, and none left once connections close
    /// (a handler kept by a reference cycle held its connection's memory for good).
    private let handlers = NIOLockedValueBox(0)

    public init() {}

    func handlerCreated() { handlers.withLockedValue { $0 += 1 } }
    func handlerFreed() { handlers.withLockedValue { $0 -= 1 } }
    var liveConnectionHandlers: Int { handlers.withLockedValue { $0 } }

    func countRequest(_ opcode: Opcode) {
        state.withLockedValue { $0.requests[opcode.name, default: 0] += 1 }
    }

    func countBreaks(fids: Int) {
        state.withLockedValue {
            $0.callBacksBroken += fids
            $0.breakMessagesSent += 1
        }
    }

    func countWaitForAbsentClient() {
        state.withLockedValue { $0.breaksWaitingForAbsentClients += 1 }
    }

    func countAnsweredOnEventLoop() {
        state.withLockedValue { $0.answeredOnEventLoop += 1 }
    }

    func countUnreachable() {
        state.withLockedValue { $0.clientsDeclaredUnreachable += 1 }
    }

    public func snapshot() -> Snapshot { state.withLockedValue { $0 } }
}
