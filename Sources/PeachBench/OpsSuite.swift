import CPeachSystem
import Foundation
import PeachClient
import PeachLocalCluster
import PeachSupport

/// `peach bench ops`: what each operation that reaches the server costs, through AFS-mode and
/// NFS-mode mounts of one server process, a local directory, and any `--compare` directory (an
/// sshfs mount, say), all in one run: median latency per operation, and the server's and the
/// cache manager's CPU and voluntary context switches per operation, read from
/// /proc/PID/task/*/{schedstat,status}. Then two workloads: postmark (when installed) and `cp -a`
/// of a source tree. With `tmpfs`, the server's root, the caches and the local directory are on
/// /dev/shm: no disk, only the software's own cost.
public struct OpsSuite: Sendable {
    /// One file system measured.
    public struct Target: Sendable {
        public var name: String
        public var root: String
    }

    public struct OperationRow: Codable, Sendable {
        public var operation: String
        public var target: String
        /// Median over every operation of every round.
        public var medianMicroseconds: Double
        /// CPU per operation, for PeachFS mounts only.
        public var serverCPUMicroseconds: Double?
        public var cacheManagerCPUMicroseconds: Double?
        /// Voluntary context switches per operation (threads that slept to wait).
        public var serverSwitches: Double?
        public var cacheManagerSwitches: Double?
    }

    public struct WorkloadRow: Codable, Sendable {
        public var workload: String
        public var target: String
        /// Wall-clock seconds of the whole run (median of the rounds).
        public var seconds: Double
        /// postmark only: its transactions over the whole run's wall time (postmark's own figure
        /// counts whole seconds of its transaction phase, too coarse for a run of a second).
        public var transactionsPerSecond: Double?
        /// Why the workload failed on this target (sshfs cannot chown symlinks, say).
        public var failure: String?
    }

    public struct Results: Codable, Sendable {
        public var sync: String
        /// Server root, caches and local directory on tmpfs.
        public var tmpfs: Bool?
        public var operations: [OperationRow]
        public var workloads: [WorkloadRow]
    }

    public var count: Int
    public var rounds: Int
    public var compare: [String]
    /// `peach server --sync`, or nil for the server's default.
    public var sync: String?
    public var postmarkFiles: Int
    public var postmarkTransactions: Int
    public var copyTree: String
    public var tmpfs: Bool

    public init(count: Int = 300, rounds: Int = 3, compare: [String] = [], sync: String? = nil,
                postmarkFiles: Int = 3000, postmarkTransactions: Int = 12000, copyTree: String = "/usr/include", tmpfs: Bool = false) {
        self.tmpfs = tmpfs
        self.count = count
        self.rounds = rounds
        self.compare = compare
        self.sync = sync
        self.postmarkFiles = postmarkFiles
        self.postmarkTransactions = postmarkTransactions
        self.copyTree = copyTree
    }

    /// The operations, in the order they run: each leaves what the next one needs.
    static let operations = ["create + write 4 KiB + close", "open O_APPEND + write 4 KiB + close",
                             "open + write 4 KiB + fsync + close", "chmod", "utime", "rename", "unlink", "mkdir", "stat"]

    public func run(progress: Progress = Progress()) throws -> Results {
        if let reason = MountSupport.unavailableReason { throw BenchError(reason) }
        for path in compare where !FileManager.default.isWritableFile(atPath: path) {
            throw BenchError("--compare \(path): not a writable directory")
        }
        let parent = tmpfs ? "/dev/shm" : nil
        let server = try ServerProcess(arguments: sync.map { ["--sync", $0] } ?? [], temporaryIn: parent ?? "/tmp")
        defer { server.stop() }
        let afs = try MountProcess(design: .afs, server: server.address, in: parent)
        defer { afs.stop() }
        let nfs = try MountProcess(design: .nfs, server: server.address, in: parent)
        defer { nfs.stop() }
        let local = try TemporaryDirectory(prefix: "peach-ops-local", in: parent ?? "/tmp")
        defer { local.remove() }
        let mounts: [String: MountProcess] = ["afs": afs, "nfs": nfs]
        let targets = [Target(name: "local", root: local.path), Target(name: "afs", root: afs.path),
                       Target(name: "nfs", root: nfs.path)] + compare.map { Target(name: $0, root: $0) }

        var samples: [String: [String: [Double]]] = [:]
        var serverUse: [String: [String: ProcessCounters]] = [:], clientUse: [String: [String: ProcessCounters]] = [:]
        for round in 0..<rounds {
            // AFS and NFS mounts share one volume: each target works in a directory of its own.
            func directory(_ index: Int) -> String { targets[index].root + "/ops-\(round)-\(index)" }
            for index in targets.indices { try makeDirectory(directory(index)) }
            for operation in Self.operations {
                progress.show("ops: round \(round + 1)/\(rounds), \(operation)")
                for (index, target) in targets.enumerated() {
                    let mount = mounts[target.name]
                    let (server0, client0) = (server.counters, mount?.counters)
                    let times = try Self.measure(operation, in: directory(index), count: count)
                    samples[operation, default: [:]][target.name, default: []] += times
                    if let mount, let client0 {
                        serverUse[operation, default: [:]][target.name, default: ProcessCounters()] += server.counters - server0
                        clientUse[operation, default: [:]][target.name, default: ProcessCounters()] += mount.counters - client0
                    }
                }
            }
            for index in targets.indices { try removeTree(directory(index)) }
        }
        let total = Double(count * rounds)
        var rows: [OperationRow] = []
        for operation in Self.operations {
            for target in targets {
                let onServer = serverUse[operation]?[target.name], inCacheManager = clientUse[operation]?[target.name]
                rows.append(OperationRow(
                    operation: operation, target: target.name,
                    medianMicroseconds: IOSuite.median(samples[operation]?[target.name] ?? []) * 1e6,
                    serverCPUMicroseconds: onServer.map { Double($0.cpuNanoseconds) / total / 1e3 },
                    cacheManagerCPUMicroseconds: inCacheManager.map { Double($0.cpuNanoseconds) / total / 1e3 },
                    serverSwitches: onServer.map { Double($0.voluntarySwitches) / total },
                    cacheManagerSwitches: inCacheManager.map { Double($0.voluntarySwitches) / total }))
            }
        }
        var workloads: [WorkloadRow] = []
        if Self.postmarkPath != nil {
            workloads += targets.map { target in
                progress.show("ops: postmark on \(target.name)")
                return Self.attempt("postmark", target) { try postmark(in: target) }
            }
            // Again on the AFS mount with store-behind on (peach fs storebehind), its last
            // stores waited for (fs sync) within the time.
            if let afs = targets.first(where: { $0.name == "afs" }) {
                let behind = Target(name: "afs, store-behind", root: afs.root)
                progress.show("ops: postmark on \(behind.name)")
                workloads.append(Self.attempt("postmark", behind) { try postmark(in: behind, storeBehindOn: afs.root) })
            }
        }
        if FileManager.default.fileExists(atPath: copyTree) {
            workloads += targets.map { target in
                progress.show("ops: cp -a \(copyTree) into \(target.name)")
                return Self.attempt("cp -a \(copyTree)", target) { try copy(into: target) }
            }
        }
        progress.done()
        return Results(sync: sync ?? "onclose", tmpfs: tmpfs, operations: rows, workloads: workloads)
    }

    /// A workload's row, or one that says why it failed on this target.
    static func attempt(_ workload: String, _ target: Target, _ body: () throws -> WorkloadRow) -> WorkloadRow {
        do { return try body() } catch {
            return WorkloadRow(workload: workload, target: target.name, seconds: 0, failure: "\(error)".prefix(200).description)
        }
    }

    /// Runs `count` of `operation` in `directory`, returning each one's seconds.
    static func measure(_ operation: String, in directory: String, count: Int) throws -> [Double] {
        let block = [UInt8](repeating: 0x5a, count: 4096)
        var times: [Double] = []
        times.reserveCapacity(count)
        for i in 0..<count {
            let file = "\(directory)/f\(i)", renamed = "\(directory)/g\(i)"
            let start = DispatchTime.now().uptimeNanoseconds
            let ok: Bool
            switch operation {
            case "create + write 4 KiB + close":
                ok = writeBlock(block, to: file, flags: O_CREAT | O_WRONLY | O_TRUNC)
            case "open O_APPEND + write 4 KiB + close":
                ok = writeBlock(block, to: file, flags: O_WRONLY | O_APPEND)
            case "open + write 4 KiB + fsync + close":
                ok = writeBlock(block, to: file, flags: O_WRONLY, sync: true)
            case "chmod":
                ok = chmod(file, 0o600) == 0
            case "utime":
                ok = utimes(file, nil) == 0
            case "rename":
                ok = rename(file, renamed) == 0
            case "unlink":
                ok = unlink(renamed) == 0
            case "mkdir":
                ok = mkdir("\(directory)/d\(i)", 0o755) == 0
            default:
                var st = stat()
                ok = stat("\(directory)/d\(i)", &st) == 0
            }
            let end = DispatchTime.now().uptimeNanoseconds
            guard ok else { throw BenchError("\(operation) failed in \(directory): \(String(cString: strerror(errno)))") }
            times.append(Double(end - start) / 1e9)
        }
        return times
    }

    private static func writeBlock(_ block: [UInt8], to path: String, flags: Int32, sync: Bool = false) -> Bool {
        let fd = open(path, flags | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return false }
        let written = block.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = !sync || fsync(fd) == 0
        return close(fd) == 0 && written == block.count && synced
    }

    static var postmarkPath: String? {
        ["/usr/bin/postmark", "/usr/local/bin/postmark"].first { access($0, X_OK) == 0 }
    }

    /// postmark with its usual parameters. Its own figure divides by whole seconds of its
    /// transaction phase (a 0.13 s run on local disk read 2000 tx/s), so the rate kept here is
    /// its transactions over the whole run's wall time, file creation and removal included.
    ///
    /// - Parameter storeBehindOn: a mount to run with store-behind on; the run's time then ends
    ///   once `fs sync` has waited for the stores still behind.
    func postmark(in target: Target, storeBehindOn mount: String? = nil) throws -> WorkloadRow {
        let directory = target.root + "/postmark-" + target.name.filter { $0.isLetter || $0.isNumber }
        try makeDirectory(directory)
        defer { try? removeTree(directory) }
        if let mount { try Self.control(mount, set: "user.peach.storebehind", to: "on") }
        defer { if let mount { try? Self.control(mount, set: "user.peach.storebehind", to: "off") } }
        let script = "set location \(directory)\nset number \(postmarkFiles)\nset transactions \(postmarkTransactions)\nrun\nquit\n"
        let start = DispatchTime.now().uptimeNanoseconds
        let result = try shell("printf '\(script.replacingOccurrences(of: "\n", with: "\\n"))' | \(Self.postmarkPath!)")
        if let mount { try Self.syncStores(mount) }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        guard result.status == 0, Self.postmarkRate(result.output) != nil, seconds > 0 else {
            throw BenchError("postmark failed in \(directory): \(result.output.suffix(500))")
        }
        return WorkloadRow(workload: "postmark", target: target.name,
                           seconds: seconds, transactionsPerSecond: Double(postmarkTransactions) / seconds)
    }

    /// Sets one of a mount's control attributes (docs/operations.md, `peach fs`).
    static func control(_ mount: String, set name: String, to value: String) throws {
        guard setxattr(mount, name, value, value.utf8.count, 0) == 0 else {
            throw BenchError("setting \(name) on \(mount): \(String(cString: strerror(errno)))")
        }
    }

    /// `peach fs sync`: returns once every dirty file of the mount is stored.
    static func syncStores(_ mount: String) throws {
        var buffer = [UInt8](repeating: 0, count: 65536)
        guard getxattr(mount, "user.peach.sync", &buffer, buffer.count) >= 0 else {
            throw BenchError("fs sync on \(mount): \(String(cString: strerror(errno)))")
        }
    }

    /// "N seconds of transactions (R per second)".
    static func postmarkRate(_ output: String) -> Double? {
        guard let line = output.split(separator: "\n").first(where: { $0.contains("seconds of transactions") }),
              let open = line.firstIndex(of: "("), let space = line[open...].firstIndex(of: " ") else { return nil }
        return Double(line[line.index(after: open)..<space])
    }

    func copy(into target: Target) throws -> WorkloadRow {
        let destination = target.root + "/copy-" + target.name.filter { $0.isLetter || $0.isNumber }
        let start = DispatchTime.now().uptimeNanoseconds
        let result = try shell("cp -a '\(copyTree)' '\(destination)'")
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        defer { try? removeTree(destination) }
        guard result.status == 0 else { throw BenchError("cp -a into \(target.name) failed: \(result.output.suffix(500))") }
        return WorkloadRow(workload: "cp -a \(copyTree)", target: target.name, seconds: seconds)
    }

    private func makeDirectory(_ path: String) throws {
        guard mkdir(path, 0o755) == 0 || errno == EEXIST else { throw BenchError("mkdir \(path): \(String(cString: strerror(errno)))") }
    }

    private func removeTree(_ path: String) throws {
        let result = try shell("rm -rf '\(path)'")
        guard result.status == 0 else { throw BenchError("rm -rf \(path) failed: \(result.output)") }
    }
}
