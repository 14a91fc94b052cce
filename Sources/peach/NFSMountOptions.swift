import ArgumentParser
import PeachClient

enum ClientMode: String, ExpressibleByArgument, CaseIterable {
    case afs
    case nfs
}

/// The NFS-style client's options, spelled and defaulted as nfs(5)'s.
struct NFSMountOptions: ParsableArguments {
    @Option(help: "READ/WRITE and cache block size (rsize/wsize), K/M suffixes, at most 1M.")
    var blockSize: ByteSize?

    @Option(help: "Minimum seconds to cache a file's attributes.")
    var acregmin: Double?

    @Option(help: "Maximum seconds to cache a file's attributes.")
    var acregmax: Double?

    @Option(help: "Minimum seconds to cache a directory's attributes.")
    var acdirmin: Double?

    @Option(help: "Maximum seconds to cache a directory's attributes.")
    var acdirmax: Double?

    @Flag(help: "No attribute caching; writes are sent at once.")
    var noac = false

    @Flag(help: "Trust cached attributes at open (NFSv2-style) instead of asking the server at every open.")
    var nocto = false

    var isUsed: Bool {
        blockSize != nil || acregmin != nil || acregmax != nil || acdirmin != nil || acdirmax != nil || noac || nocto
    }

    func validate() throws {
        if let blockSize, blockSize.bytes < 4096 || blockSize.bytes > 1 << 20 {
            throw CommandFailure("--block-size must be between 4K and 1M")
        }
        for (name, value) in [("acregmin", acregmin), ("acregmax", acregmax), ("acdirmin", acdirmin), ("acdirmax", acdirmax)] {
            if let value, value < 0 { throw CommandFailure("--\(name) must not be negative") }
        }
        if let acregmin, let acregmax, acregmin > acregmax { throw CommandFailure("--acregmin must not exceed --acregmax") }
        if let acdirmin, let acdirmax, acdirmin > acdirmax { throw CommandFailure("--acdirmin must not exceed --acdirmax") }
    }

    func options(cacheSize: UInt64?) -> NFSOptions {
        var o = NFSOptions()
        if let blockSize { o.blockSize = Int(blockSize.bytes) }
        if let cacheSize { o.cacheSize = cacheSize }
        if let acregmin { o.acregmin = acregmin }
        if let acregmax { o.acregmax = acregmax }
        if let acdirmin { o.acdirmin = acdirmin }
        if let acdirmax { o.acdirmax = acdirmax }
        // As nfs(5): a max given below the default min lowers the min with it.
        o.acregmin = min(o.acregmin, o.acregmax)
        o.acdirmin = min(o.acdirmin, o.acdirmax)
        o.noac = noac
        o.cto = !nocto
        return o
    }
}
