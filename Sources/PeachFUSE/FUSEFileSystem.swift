import CFuse3
import Foundation
import Logging
import NIOConcurrencyHelpers
import PeachClient
import PeachProtocol

/// A mounted PeachFS: a libfuse low-level session whose requests go to a `CacheManager`.
/// This layer only translates; what to cache and when is the cache manager's business.
public final class FUSEFileSystem: @unchecked Sendable {
    public struct Options: Sendable {
        public var allowOther = false
        /// What /proc/mounts and df show as the source: the server's address, as NFS shows its export.
        public var fsName = "peachfs"
        /// Off only for the negative control of the invalidation tests: then a break leaves the
        /// kernel's cached attributes and pages in place until they time out.
        public var kernelInvalidation = true

        public init(allowOther: Bool = false, kernelInvalidation: Bool = true, fsName: String = "peachfs") {
            self.allowOther = allowOther
            self.kernelInvalidation = kernelInvalidation
            // A comma would end the option in libfuse's list.
            self.fsName = fsName.replacingOccurrences(of: ",", with: "_")
        }
    }

    let cacheManager: CacheManager
    let logger: Logger
    /// The groups of the processes served, kept a second (`CredentialCache`).
    let credentials = CredentialCache()
    private let mountPoint: String
    private var session: OpaquePointer?
    private var retained: Unmanaged<FUSEFileSystem>?
    /// opendir snapshots, so readdir offsets stay stable while a directory changes.
    let directoryHandles = NIOLockedValueBox<(next: UInt64, open: [UInt64: [DirectoryListingEntry]])>((1, [:]))

    public init(cacheManager: CacheManager, mountPoint: String, options: Options, logger: Logger = Logger(label: "peach.fuse")) throws {
        self.cacheManager = cacheManager
        self.mountPoint = mountPoint
        self.logger = logger
        var mountOptions = "fsname=\(options.fsName),subtype=peach,default_permissions"
        if options.allowOther { mountOptions += ",allow_other" }
        let argv = ["peach", "-o", mountOptions]
        var cStrings = argv.map { strdup($0) }
        defer { cStrings.forEach { free($0) } }
        let retained = Unmanaged.passRetained(self)
        let session: OpaquePointer? = cStrings.withUnsafeMutableBufferPointer { buffer in
            var args = fuse_args(argc: Int32(argv.count), argv: buffer.baseAddress, allocated: 0)
            var operations = peachOperations
            return fuse_session_new(&args, &operations, MemoryLayout<fuse_lowlevel_ops>.size, retained.toOpaque())
        }
        guard let session else {
            retained.release()
            throw FileSystemError(EINVAL, "libfuse refused the session options")
        }
        guard fuse_session_mount(session, mountPoint) == 0 else {
            fuse_session_destroy(session)
            retained.release()
            throw FileSystemError(EIO, "cannot mount on \(mountPoint) (is it a directory, not already mounted, and is /dev/fuse there?)")
        }
        self.session = session
        self.retained = retained
        if options.kernelInvalidation { cacheManager.setKernelNotifier(KernelInvalidator(session: session)) }
    }

    /// Serves kernel requests until the file system is unmounted or SIGINT/SIGTERM/SIGHUP arrives,
    /// then unmounts. The cache manager is left to the caller to shut down.
    public func run(maxThreads: UInt32 = 16) -> Int32 {
        guard let session else { return -1 }
        fuse_set_signal_handlers(session)
        let config = fuse_loop_cfg_create()
        fuse_loop_cfg_set_max_threads(config, maxThreads)
        fuse_loop_cfg_set_idle_threads(config, 4)
        let result = fuse_session_loop_mt(session, config)
        fuse_loop_cfg_destroy(config)
        fuse_remove_signal_handlers(session)
        cacheManager.setKernelNotifier(nil)
        fuse_session_unmount(session)
        fuse_session_destroy(session)
        self.session = nil
        retained?.release()
        retained = nil
        return result
    }

    static func from(_ request: fuse_req_t?) -> FUSEFileSystem {
        Unmanaged<FUSEFileSystem>.fromOpaque(fuse_req_userdata(request)!).takeUnretainedValue()
    }
}
