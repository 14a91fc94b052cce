import Foundation
import PeachClient
import PeachProtocol
import PeachSecurity
import PeachServer
import PeachSupport

/// A file server on loopback and any number of in-process AFS cache managers, each with its
/// own cache directory, all in one temporary directory. `shutdown()` stops everything and
/// removes the directory; `withCluster` does it in every outcome.
public final class InProcessCluster: @unchecked Sendable {
    public let directory: TemporaryDirectory
    public let server: FileServer
    public let address: ServerAddress
    public private(set) var clients: [CacheManager] = []
    private var stopped = false

    public init(callBackTimeout: Int64 = 5, limits: ConnectionLimits = ConnectionLimits(), tls: ServerTLS? = nil,
                identityPolicy: IdentityPolicy = IdentityPolicy()) throws {
        directory = try TemporaryDirectory(prefix: "peach-cluster")
        let store = try VolumeStore(root: try directory.subdirectory("server"))
        server = FileServer(store: store, callBackTimeout: .seconds(callBackTimeout), limits: limits, tls: tls,
                            identityPolicy: identityPolicy)
        let port = try server.start(host: "127.0.0.1", port: 0)
        address = ServerAddress(host: "127.0.0.1", port: port)
    }

    /// A new started cache manager (cache directory `name`, reused if it exists: a restart),
    /// connected to the server directly or `through` a proxy.
    public func addClient(named name: String? = nil, cacheSize: UInt64 = 1 << 30, tls: ClientTLS? = nil,
                          through proxy: (any LoopbackRelay)? = nil) throws -> AFSCacheManager {
        let cache = try directory.subdirectory("cache-\(name ?? String(clients.count))")
        let server = proxy.map { ServerAddress(host: "127.0.0.1", port: $0.port) } ?? address
        let client = try AFSCacheManager(server: server, cacheDirectory: cache, cacheSize: cacheSize, tls: tls)
        try client.start()
        clients.append(client)
        return client
    }

    /// A new started NFS-style client.
    public func addNFSClient(_ options: NFSOptions = NFSOptions(), tls: ClientTLS? = nil) throws -> NFSCacheManager {
        let client = NFSCacheManager(server: address, options: options, tls: tls)
        try client.start()
        clients.append(client)
        return client
    }

    /// A new started client of either design, for the suites that run against both.
    public func addClient(_ design: ClientDesign) throws -> CacheManager {
        switch design {
        case .afs: try addClient()
        case .nfs: try addNFSClient()
        }
    }

    /// Shuts one client down (as an unmount does) and forgets it.
    public func stopClient(_ client: CacheManager) {
        client.shutdown()
        clients.removeAll { $0 === client }
    }

    public func shutdown() {
        guard !stopped else { return }
        stopped = true
        for client in clients { client.shutdown() }
        clients = []
        server.stop()
        directory.remove()
    }

    deinit { shutdown() }
}

/// A process on loopback that clients may reach the server through (a test's `TCPProxy`).
public protocol LoopbackRelay: AnyObject {
    /// The port it listens on, on 127.0.0.1.
    var port: Int { get }
}

/// The two cache-manager designs.
public func withCluster<T>(callBackTimeout: Int64 = 5, limits: ConnectionLimits = ConnectionLimits(), tls: ServerTLS? = nil,
                           identityPolicy: IdentityPolicy = IdentityPolicy(), _ body: (InProcessCluster) throws -> T) throws -> T {
    let cluster = try InProcessCluster(callBackTimeout: callBackTimeout, limits: limits, tls: tls, identityPolicy: identityPolicy)
    defer { cluster.shutdown() }
    return try body(cluster)
}
