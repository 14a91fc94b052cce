/// Who sent a request, and whether it may be granted callbacks: AFS-side requests are, the
/// NFS-style procedures are served statelessly and are not.
public struct Requester: Sendable, Hashable, ExpressibleByStringLiteral {
    public var clientID: String
    public var grantsCallBacks: Bool

    public static func afs(_ clientID: String) -> Requester { Requester(clientID: clientID, grantsCallBacks: true) }
    public static func stateless(_ clientID: String) -> Requester { Requester(clientID: clientID, grantsCallBacks: false) }

    public init(clientID: String, grantsCallBacks: Bool) {
        self.clientID = clientID
        self.grantsCallBacks = grantsCallBacks
    }

    /// A string literal is an AFS client id (for tests).
    public init(stringLiteral clientID: String) {
        self.init(clientID: clientID, grantsCallBacks: true)
    }
}
