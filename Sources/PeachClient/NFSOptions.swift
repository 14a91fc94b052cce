/// The NFS-style client's mount options, named and defaulted as the Linux NFS client's (nfs(5)).
public struct NFSOptions: Sendable, Equatable {
    /// Block size of the cache and of READ/WRITE requests (rsize/wsize).
    public var blockSize = 64 * 1024
    /// Bytes of clean blocks the memory cache keeps.
    public var cacheSize: UInt64 = 256 << 20
    /// Attribute cache timeouts in seconds for files (acregmin/acregmax) and directories
    /// (acdirmin/acdirmax). A timeout starts at min and doubles, up to max, each time the
    /// attributes are found unchanged.
    public var acregmin: Double = 3
    public var acregmax: Double = 60
    public var acdirmin: Double = 30
    public var acdirmax: Double = 60
    /// noac: no attribute caching, and writes are sent at once.
    public var noac = false
    /// Close-to-open: every open asks the server for fresh attributes (nocto: trust the cache).
    public var cto = true

    public init() {}

    func timeouts(forDirectory directory: Bool) -> (min: Double, max: Double) {
        if noac { return (0, 0) }
        return directory ? (acdirmin, acdirmax) : (acregmin, acregmax)
    }
}
