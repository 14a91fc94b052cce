import ArgumentParser
import CPeachSystem
import Foundation
import PeachClient
import PeachFUSE
import PeachSupport

struct FsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fs",
        abstract: "Ask the cache manager serving a path (as OpenAFS's fs command does).",
        discussion: "The subcommands that report print text, or JSON with --json.",
        subcommands: [Stats.self, Flush.self, FlushAll.self, Sync.self, CallBacks.self, Conflicts.self, GetCacheParms.self,
                      SetCacheSize.self, StoreBehind.self, CheckServers.self, WhereIs.self, Warmup.self]
    )

    struct Stats: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The statistics of the cache manager serving PATH: counters and hit rates.")
        @OptionGroup var query: Query

        func run() throws {
            try ControlClient.show(ControlAttributes.stats, path: query.path, json: query.json, mountWide: true) { (stats: ClientStatistics.Snapshot) in
                print(StatsTable(stats).render(), terminator: "")
            }
        }
    }

    struct Flush: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Drop the cached copy of PATH (a dirty file is stored first).")
        @Argument(help: "A file or directory inside a PeachFS mount.") var path: String
        func run() throws { try ControlClient.set(ControlAttributes.flush, path: path) }
    }

    struct CallBacks: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "callbacks", abstract: "List the callbacks the cache manager serving PATH holds (path, FID, expiry).")
        @OptionGroup var query: Query

        func run() throws {
            struct Listing: Decodable {
                var count: Int
                var truncated: Bool
                var callbacks: [CallBackInfo]
            }
            try ControlClient.show(ControlAttributes.callbacks, path: query.path, json: query.json, mountWide: true) { (listing: Listing) in
                var table = TextTable(["path", "FID", "expires in"])
                let now = Date().timeIntervalSince1970
                for callBack in listing.callbacks {
                    table.add([callBack.path ?? "(path unknown)", callBack.fid, String(format: "%.0f s", max(0, Double(callBack.expiresAt) - now))])
                }
                print("\(listing.count) callbacks" + (listing.truncated ? " (the first \(listing.callbacks.count) shown)" : ""))
                if !listing.callbacks.isEmpty { print(table.render(), terminator: "") }
            }
        }
    }

    struct GetCacheParms: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "getcacheparms", abstract: "How much of its cache the cache manager serving PATH uses, and its limit.")
        @OptionGroup var query: Query

        func run() throws {
            try ControlClient.show(ControlAttributes.cacheParameters, path: query.path, json: query.json, mountWide: true) { (p: CacheParameters) in
                let percent = p.limitBytes > 0 ? Double(p.usedBytes) / Double(p.limitBytes) * 100 : 0
                print("using \(formatBytes(p.usedBytes)) of the cache's \(formatBytes(p.limitBytes)) (\(String(format: "%.1f", percent))%) "
                      + "in \(p.files) files")
            }
        }
    }

    struct SetCacheSize: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "setcachesize",
            abstract: "Change the cache limit of the mount serving PATH, at once (root only; clean copies are evicted to fit).",
            discussion: "Until the next mount: --cache-size (or -o cache_size=) sets the limit a mount starts with.")
        @Argument(help: "A path inside a PeachFS mount.") var path: String
        @Argument(help: "The new limit, K/M/G/T suffixes (at least 1M).") var size: ByteSize
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            guard UInt64(size.bytes) >= ControlAttributes.minimumCacheSize else { throw CommandFailure("the cache size must be at least 1M") }
            try ControlClient.set(ControlAttributes.cacheSize, path: path, value: "\(size.bytes)", mountWide: true)
            try ControlClient.show(ControlAttributes.cacheParameters, path: path, json: json, mountWide: true) { (p: CacheParameters) in
                print("cache limit now \(formatBytes(p.limitBytes)); using \(formatBytes(p.usedBytes)) in \(p.files) files")
            }
        }
    }

    struct StoreBehind: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "storebehind",
            abstract: "Show or change whether a close on the AFS-mode mount serving PATH returns before its store (root to change).",
            discussion: """
                With store-behind on, close(2) returns once the data is in the cache and the store follows in the \
                background: a failed store is logged, not returned by close, and other clients see the new content \
                only once the store lands. fsync(2), `peach fs sync` and unmount still wait for every store \
                (docs/consistency.md). Until the next mount: --store-behind sets it for a mount.
                """)
        @Argument(help: "A path inside a PeachFS mount.") var path: String
        @Flag(help: "Turn store-behind on.") var on = false
        @Flag(help: "Turn it off: closes wait for their stores again.") var off = false
        @Flag(help: "Print JSON.") var json = false

        func validate() throws {
            if on && off { throw CommandFailure("give --on or --off, not both") }
        }

        func run() throws {
            if on || off { try ControlClient.set(ControlAttributes.storeBehind, path: path, value: on ? "on" : "off", mountWide: true) }
            try ControlClient.show(ControlAttributes.storeBehind, path: path, json: json, mountWide: true) { (s: StoreBehindState) in
                print("store-behind is \(s.enabled ? "on" : "off"); \(s.pending) closed files wait for their store")
            }
        }
    }

    struct CheckServers: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "checkservers", abstract: "Whether the file server of the mount serving PATH answers, since when not, and its round trip.")
        @OptionGroup var query: Query

        func run() throws {
            let check = try ControlClient.show(ControlAttributes.checkServers, path: query.path, json: query.json,
                                               mountWide: true) { (c: ServerCheck) in
                if c.reachable {
                    print("server \(c.server) is up (round trip \(String(format: "%.2f", c.roundTripMilliseconds ?? 0)) ms)")
                } else {
                    let since = c.unreachableSince.map { AdminServer.time($0) } ?? "now"
                    print("server \(c.server) is unreachable since \(since)")
                }
            }
            if !check.reachable { throw ExitCode(1) }
        }
    }

    struct WhereIs: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "whereis", abstract: "The file server holding PATH, and PATH's FID there.")
        @OptionGroup var query: Query

        func run() throws {
            try ControlClient.show(ControlAttributes.whereIs, path: query.path, json: query.json) { (location: FileLocation) in
                print("\(query.path) is on server \(location.server), FID \(location.fid)")
            }
        }
    }

    struct Sync: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Store every dirty file of the mount serving PATH; returns once all are stored.",
            discussion: "Files still open stay open; their content as of now is stored. Exits 1, listing them, if any could not be.")
        @OptionGroup var query: Query

        func run() throws {
            let report = try ControlClient.show(ControlAttributes.sync, path: query.path, json: query.json, mountWide: true) { (report: SyncReport) in
                print("stored \(report.stored) dirty files")
            }
            try UnsavedFile.fail(report.failed, "dirty files could not be stored")
        }
    }

    struct FlushAll: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "flushall", abstract: "Drop every cached copy of the mount serving PATH (dirty files are stored first; open files keep theirs).")
        @OptionGroup var query: Query

        func run() throws {
            let report = try ControlClient.show(ControlAttributes.flushAll, path: query.path, json: query.json, mountWide: true) { (report: FlushReport) in
                print("dropped \(report.dropped) cached copies; \(report.keptOpen) open files kept theirs")
            }
            try UnsavedFile.fail(report.failed, "dirty files could not be stored, and keep their copies")
        }
    }
}

extension UnsavedFile {
    /// Exits 1 naming each file, if any.
    static func fail(_ files: [UnsavedFile], _ what: String) throws {
        guard !files.isEmpty else { return }
        throw CommandFailure("\(files.count) \(what):\n" + files.map { "  \($0.path ?? "fid " + $0.fid): \($0.error)" }.joined(separator: "\n"))
    }
}

/// `peach fs stats` as text: each counter, and the hit rates as percentages.
struct StatsTable {
    var stats: ClientStatistics.Snapshot

    init(_ stats: ClientStatistics.Snapshot) { self.stats = stats }

    static func percent(_ part: some BinaryInteger, of whole: some BinaryInteger) -> String {
        whole == 0 ? "—" : String(format: "%.1f%%", Double(part) / Double(whole) * 100)
    }

    func render() -> String {
        var table = TextTable(["\(stats.mode) mode", "value"])
        table.add(["opens", "\(stats.opens)"])
        table.add(["open hit rate", "\(Self.percent(stats.openHits, of: stats.opens)) (no request: \(stats.openHits))"])
        table.add(["reads", "\(stats.reads) (\(formatBytes(stats.readBytes)))"])
        table.add(["read hit rate (bytes)", Self.percent(stats.readHitBytes, of: stats.readBytes)])
        table.add(["writes", "\(stats.writes) (\(formatBytes(stats.writeBytes)))"])
        table.add(["fetches", "\(stats.fetches) (\(formatBytes(stats.fetchedBytes)))"])
        table.add(["stores", "\(stats.stores) (\(formatBytes(stats.storedBytes)))"])
        table.add(["callback breaks received", "\(stats.callbacksReceived)"])
        table.add(["evictions", "\(stats.evictions)"])
        table.add(["cache used", formatBytes(stats.cacheBytes)])
        table.add(["vnodes", "\(stats.vnodes)"])
        table.add(["conflicts kept", "\(stats.conflicts)"])
        table.add(["server", stats.serverReachable ? "reachable" : "unreachable"])
        table.add(["offline opens", "\(stats.offlineOpens)"])
        table.add(["opens read through (larger than the cache)", "\(stats.readThroughOpens)"])
        table.add(["server requests", "\(stats.serverRequests) (and \(stats.pings) pings)"])
        for (name, count) in stats.rpcs.sorted(by: { $0.value > $1.value || ($0.value == $1.value && $0.key < $1.key) }) {
            table.add(["  \(name)", "\(count)"])
        }
        return table.render()
    }
}

extension FsCommand {
    struct Warmup: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Fetch whole trees into the cache ahead of use, as JuiceFS's warmup does.",
            discussion: "Reads every file under each PATH once through the mount (AFS mode: each becomes a cached copy), with a progress line, then a summary.")
        @Argument(help: "Files or directories inside a PeachFS mount.") var paths: [String]

        func run() throws {
            for path in paths { _ = try ControlClient.get(ControlAttributes.stats, path: path) }  // in a mount, or a clear error
            let started = Date()
            var (files, bytes, failed) = (0, UInt64(0), [String]())
            var buffer = [UInt8](repeating: 0, count: 1 << 20)
            let progress = isatty(STDERR_FILENO) != 0
            func warm(_ file: String) {
                let fd = open(file, O_RDONLY | O_CLOEXEC)
                guard fd >= 0 else { return failed.append("\(file): \(String(cString: strerror(errno)))") }
                defer { close(fd) }
                while true {
                    let n = read(fd, &buffer, buffer.count)
                    if n < 0 && errno == EINTR { continue }
                    if n < 0 { return failed.append("\(file): \(String(cString: strerror(errno)))") }
                    if n == 0 { break }
                    bytes += UInt64(n)
                }
                files += 1
                if progress { FileHandle.standardError.write(Data("\rwarming: \(files) files, \(formatBytes(bytes))".utf8)) }
            }
            for path in paths {
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                    failed.append("\(path): no such file or directory")
                    continue
                }
                guard isDirectory.boolValue else {
                    warm(path)
                    continue
                }
                let walker = FileManager.default.enumerator(at: URL(fileURLWithPath: path), includingPropertiesForKeys: [.isRegularFileKey])
                while let url = walker?.nextObject() as? URL {
                    if (try? url.resourceValues(forKeys: [.isRegularFileKey]))?.isRegularFile == true { warm(url.path) }
                }
            }
            if progress { FileHandle.standardError.write(Data("\n".utf8)) }
            let seconds = Date().timeIntervalSince(started)
            print("warmed \(files) files (\(formatBytes(bytes))) in \(formatSeconds(seconds))" + (failed.isEmpty ? "" : "; \(failed.count) failed"))
            guard failed.isEmpty else { throw CommandFailure(failed.joined(separator: "\n")) }
        }
    }
}

extension FsCommand {
    struct Conflicts: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the dirty copies the cache manager serving PATH kept aside because the server had a newer version.",
            discussion: "Each copy's bytes are in the file shown; copy what you need, then remove the file and its .json record (docs/recovery.md).")
        @OptionGroup var query: Query

        func run() throws {
            try ControlClient.show(ControlAttributes.conflicts, path: query.path, json: query.json, mountWide: true) { (conflicts: [Conflict]) in
                if conflicts.isEmpty { return print("no conflicts") }
                for conflict in conflicts {
                    let when = Date(timeIntervalSince1970: TimeInterval(conflict.keptAt)).formatted(.iso8601)
                    print("\(conflict.path ?? "(path unknown)")  fid \(conflict.fid), based on version \(conflict.baseVersion), "
                          + "\(conflict.size) bytes, kept \(when)\n    \(conflict.file)")
                }
            }
        }
    }
}

/// What every `peach fs` query takes: the path whose mount to ask, and --json.
struct Query: ParsableArguments {
    @Argument(help: "A path inside a PeachFS mount.") var path: String
    @Flag(help: "Print JSON.") var json = false
}

/// The client side of the control attributes (see `ControlAttributes`).
enum ControlClient {
    /// Reads the JSON attribute `name` of `path`: printed as it is with `--json`, else decoded and
    /// handed to `text`. Returns the decoded value either way (for an exit status).
    ///
    /// A `mountWide` question (about the whole mount, not the file) goes to the mount root, and
    /// as root through the trusted namespace: for that the kernel checks no file permission, so
    /// it asks no attributes of the server first, and the question is answered while the server
    /// is down, even on a hard mount.
    @discardableResult
    static func show<Value: Decodable>(_ name: String, path: String, json: Bool, mountWide: Bool = false,
                                       _ text: (Value) throws -> Void) throws -> Value {
        let (name, path) = mountWide ? self.mountWide(name, path) : (name, path)
        let raw = try get(name, path: path)
        let value = try JSONDecoder().decode(Value.self, from: Data(raw.utf8))
        if json { print(raw) } else { try text(value) }
        return value
    }

    static func get(_ name: String, path: String) throws -> String {
        var buffer = [UInt8](repeating: 0, count: 65536)
        let n = getxattr(path, name, &buffer, buffer.count)
        guard n >= 0 else { throw failure(path) }
        return String(decoding: buffer[0..<n], as: UTF8.self)
    }

    /// The attribute and path a mount-wide question uses (see `show`).
    static func mountWide(_ name: String, _ path: String) -> (String, String) {
        let root = MountTable.peachMountRoot(of: path) ?? path
        return (getuid() == 0 ? ControlAttributes.trusted(name) : name, root)
    }

    static func set(_ name: String, path: String, value: String = "", mountWide: Bool = false) throws {
        let (name, path) = mountWide ? self.mountWide(name, path) : (name, path)
        // Ask first, in the same namespace: on any other file system the set would store a real attribute.
        _ = try get(name.hasPrefix("trusted.") ? ControlAttributes.trusted(ControlAttributes.stats) : ControlAttributes.stats, path: path)
        let bytes = Array(value.utf8)
        guard setxattr(path, name, bytes, bytes.count, 0) == 0 else {
            // The path answered the question above: a refusal now is the mount's, for a non-root caller.
            if mountWide && errno == EACCES { errno = EPERM }
            throw failure(path)
        }
    }

    private static func failure(_ path: String) -> CommandFailure {
        let code = errno
        if code == ENODATA || code == ENOTSUP || code == EOPNOTSUPP {
            return CommandFailure("\(path) is not in a PeachFS mount")
        }
        if code == EPERM {
            return CommandFailure("\(path): only root may do this, as it concerns every user of the mount (\(String(cString: strerror(code))))")
        }
        return CommandFailure("\(path): \(String(cString: strerror(code)))")
    }
}
