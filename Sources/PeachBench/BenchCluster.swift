import Foundation
import PeachClient
import PeachLocalCluster
import PeachProtocol
import PeachServer

/// What a run shows to Prometheus (`peach bench andrew --metrics`): each cluster's server as it
/// starts, and the `peach mount` options of each design's mount (their own `--metrics`).
public struct BenchMetricsHooks: Sendable {
    public var serverStarted: @Sendable (FileServer) -> Void
    public var mountArguments: @Sendable (ClientDesign) -> [String]

    public init(serverStarted: @escaping @Sendable (FileServer) -> Void, mountArguments: @escaping @Sendable (ClientDesign) -> [String]) {
        self.serverStarted = serverStarted
        self.mountArguments = mountArguments
    }
}

/// A fresh server with clients for one workload: in-process cache managers (exact counts, no
/// mount), or `peach mount` processes (through the kernel). Always torn down.
public final class BenchCluster {
    private let inProcess: InProcessCluster?
    private let mountedCluster: MountedCluster?
    private let nfsOptions: NFSOptions
    private var mounts: [ClientDesign: MountedCluster.Mount] = [:]
    public private(set) var writer: BenchFileSystem
    /// Mounts speak mutual TLS with this cell's certificates (the server serves TLS only).
    private let cell: CertificateCell?
    private let metrics: BenchMetricsHooks?

    init(mounted: Bool, nfsCacheSize: Int, blockSize: Int, cell: CertificateCell? = nil, metrics: BenchMetricsHooks? = nil) throws {
        self.cell = cell
        self.metrics = metrics
        var options = NFSOptions()
        options.cacheSize = UInt64(nfsCacheSize)
        options.blockSize = blockSize
        nfsOptions = options
        if mounted {
            // The benchmark runs as root on both machines: their root stays root.
            let cluster = try MountedCluster(tls: try cell?.serverTLS(), identityPolicy: IdentityPolicy(noRootSquash: ["alpha", "beta"]))
            mountedCluster = cluster
            metrics?.serverStarted(cluster.server)
            inProcess = nil
            writer = MountedFileSystem(root: try cluster.mount("writer", design: .afs,
                                                               extraArguments: cell?.mountArguments("alpha") ?? []).path)
        } else {
            let cluster = try InProcessCluster()
            inProcess = cluster
            mountedCluster = nil
            writer = InProcessFileSystem(try cluster.addClient(named: "writer"))
        }
    }

    public static func with<T>(mounted: Bool, nfsCacheSize: Int = 256 << 20, blockSize: Int = 64 << 10, cell: CertificateCell? = nil,
                               metrics: BenchMetricsHooks? = nil, _ body: (BenchCluster) throws -> T) throws -> T {
        let cluster = try BenchCluster(mounted: mounted, nfsCacheSize: nfsCacheSize, blockSize: blockSize, cell: cell, metrics: metrics)
        defer { cluster.shutdown() }
        return try body(cluster)
    }

    /// A new client of `design` (a mount named after it, or an in-process cache manager).
    public func client(_ design: ClientDesign, name: String? = nil) throws -> BenchFileSystem {
        if let mountedCluster {
            let label = name ?? design.rawValue
            let extra = (design == .nfs ? ["--cache-size", "\(nfsOptions.cacheSize)", "--block-size", "\(nfsOptions.blockSize)"] : [])
                + (cell?.mountArguments("beta") ?? []) + (metrics?.mountArguments(design) ?? [])
            let mount = try mountedCluster.mount(label, design: design, extraArguments: extra)
            mounts[design] = mount
            return MountedFileSystem(root: mount.path)
        }
        switch design {
        case .afs: return InProcessFileSystem(try inProcess!.addClient())
        case .nfs: return InProcessFileSystem(try inProcess!.addNFSClient(nfsOptions))
        }
    }

    /// Through a mount, drops the kernel's cached pages of `path` (memory pressure, as when a
    /// file does not fit in memory). In-process clients have no kernel cache.
    public func dropKernelPages(_ path: String, design: ClientDesign) {
        guard let mount = mounts[design] else { return }
        let fd = open(mount.path + path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
        close(fd)
    }

    func shutdown() {
        inProcess?.shutdown()
        mountedCluster?.shutdown()
    }
}

