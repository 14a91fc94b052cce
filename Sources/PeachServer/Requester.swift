import PeachProtocol

/// Who sent a request: the client (for callbacks), whether it may be granted callbacks (AFS-mode
/// connections are, NFS-mode ones are served statelessly and are not), and the identity
/// the request acts as for permission checks (nil: none, for the server's own calls and tests).
public struct Requester: Sendable, Hashable, ExpressibleByStringLiteral {
    public var clientID: String
    public var grantsCallBacks: Bool
    public var identity: Identity?
    /// A numbered request is carried out once: a repeat gets the recorded reply (`ReplayTable`).
    public var number: RequestNumber?

    public static func afs(_ clientID: String, as identity: Identity? = nil) -> Requester {
        Requester(clientID: clientID, grantsCallBacks: true, identity: identity)
    }

    public static func stateless(_ clientID: String, as identity: Identity? = nil) -> Requester {
        Requester(clientID: clientID, grantsCallBacks: false, identity: identity)
    }

    /// A client of `design`, acting as `identity`.
    public static func client(_ clientID: String, design: ClientDesign, as identity: Identity? = nil,
                              number: RequestNumber? = nil) -> Requester {
        var requester = Requester(clientID: clientID, grantsCallBacks: design == .afs, identity: identity)
        requester.number = number
        return requester
    }

    public init(clientID: String, grantsCallBacks: Bool, identity: Identity? = nil) {
        self.clientID = clientID
        self.grantsCallBacks = grantsCallBacks
        self.identity = identity
    }

    /// A string literal is an AFS client id with no permission checks (for tests).
    public init(stringLiteral clientID: String) {
        self.init(clientID: clientID, grantsCallBacks: true)
    }
}
