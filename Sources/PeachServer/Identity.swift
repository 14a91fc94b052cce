import PeachProtocol

/// The user a request acts as, after the server's policy has mapped the credential the client
/// sent (root squashing, a local user's own uid). The permission checks use only this.
public struct Identity: Sendable, Hashable {
    public var uid: UInt32
    public var gid: UInt32
    public var groups: [UInt32]
    /// The machine may only read (`--read-only-clients`): every change gets EROFS.
    public var readOnly: Bool

    public init(uid: UInt32, gid: UInt32, groups: [UInt32] = [], readOnly: Bool = false) {
        self.uid = uid
        self.gid = gid
        self.groups = groups
        self.readOnly = readOnly
    }

    /// Unsquashed root: passes every permission check, as CAP_DAC_OVERRIDE and CAP_FOWNER do.
    public var isSuperUser: Bool { uid == 0 }

    public func isMember(of group: UInt32) -> Bool { gid == group || groups.contains(group) }
}

/// How the server maps credentials to identities: `peach server --anon-uid --anon-gid
/// --no-root-squash --all-squash --read-only-clients`, as an NFS server's exports options.
public struct IdentityPolicy: Sendable {
    public var anonymousUID: UInt32
    public var anonymousGID: UInt32
    /// Client machines (certificate names) whose root stays root.
    public var noRootSquash: Set<String>
    /// Every user of every machine acts as the anonymous user.
    public var allSquash: Bool
    /// Client machines that may only read.
    public var readOnlyClients: Set<String>
    /// Client machines whose certificate lets them ask `peach admin`'s questions (`--admin`).
    /// Root on the server's own machine always may.
    public var administrators: Set<String>

    public init(anonymousUID: UInt32 = 65534, anonymousGID: UInt32 = 65534, noRootSquash: Set<String> = [],
                allSquash: Bool = false, readOnlyClients: Set<String> = [], administrators: Set<String> = []) {
        self.anonymousUID = anonymousUID
        self.anonymousGID = anonymousGID
        self.noRootSquash = noRootSquash
        self.allSquash = allSquash
        self.readOnlyClients = readOnlyClients
        self.administrators = administrators
    }

    /// Whether a connection from `principal` may ask admin questions: root on this machine, or
    /// a machine named in `--admin` that proved itself with the cell's certificate.
    public func mayAdminister(_ principal: Principal) -> Bool {
        switch principal {
        case .localRoot: true
        case .machine(let name): administrators.contains(name)
        case .localUser, .unauthenticated: false
        }
    }
}

/// Who is at the other end of a connection, as far as the server can tell.
public enum Principal: Sendable, Equatable {
    /// A client machine that proved itself with a certificate of the cell (the certificate's name).
    case machine(String)
    /// A plain connection from this machine whose socket belongs to root: this machine's own
    /// cache manager. Its root is the root that owns the server's files anyway, so it is not squashed.
    case localRoot
    /// A plain connection from this machine whose socket belongs to another user: every request
    /// acts as that user, whatever it claims.
    case localUser(Identity)
    /// A plain connection from another machine (`--insecure`), named by its address.
    case unauthenticated(String)

    /// How `peach admin clients` names it.
    public var displayName: String {
        switch self {
        case .machine(let name): name
        case .localRoot: "localhost (root)"
        case .localUser(let identity): "localhost (uid \(identity.uid))"
        case .unauthenticated(let address): "\(address) (unauthenticated)"
        }
    }

    /// The machine `--no-root-squash` and `--read-only-clients` match: every local user's
    /// connection comes from "localhost" (only root's is spared squashing, by its own case).
    public var machineName: String {
        switch self {
        case .machine(let name), .unauthenticated(let name): name
        case .localRoot, .localUser: "localhost"
        }
    }

    /// Who owns a client id this principal introduces (`client.owner`): the certificate's
    /// machine over TLS, the socket's uid on this machine, the address of an unauthenticated
    /// peer. Another principal is refused that id, and with it the id's promises and replies.
    public var ownerKey: String {
        switch self {
        case .machine(let name): "machine:\(name)"
        case .localRoot: "local:0"
        case .localUser(let identity): "local:\(identity.uid)"
        case .unauthenticated(let address): "address:\(address)"
        }
    }
}

extension IdentityPolicy {
    /// The identity a request with `credential` acts as on a connection from `principal`.
    public func identity(for credential: Credential, from principal: Principal) -> Identity {
        let readOnly = readOnlyClients.contains(principal.machineName)
        let anonymous = Identity(uid: anonymousUID, gid: anonymousGID, readOnly: readOnly)
        switch principal {
        case .localUser(var user):
            user.readOnly = readOnly
            return allSquash ? anonymous : user
        case .localRoot:
            if allSquash { return anonymous }
        case .machine(let name), .unauthenticated(let name):
            if allSquash || (credential.uid == 0 && !noRootSquash.contains(name)) { return anonymous }
        }
        return Identity(uid: credential.uid, gid: credential.gid, groups: credential.groups, readOnly: readOnly)
    }
}

extension Principal: CustomStringConvertible {
    public var description: String {
        switch self {
        case .machine(let name): "machine \(name)"
        case .localRoot: "local root"
        case .localUser(let identity): "local user \(identity.uid)"
        case .unauthenticated(let address): "unauthenticated \(address)"
        }
    }
}
