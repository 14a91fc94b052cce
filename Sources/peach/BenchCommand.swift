import ArgumentParser
import Foundation
import NIOConcurrencyHelpers
import PeachBench
import PeachClient
import PeachLocalCluster
import PeachMetrics
import PeachProtocol
import PeachServer
import PeachSupport

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure the AFS-style and NFS-style designs side by side.",
        subcommands: [OSTEPCommand.self, AndrewCommand.self, ScaleCommand.self, SharingCommand.self, IOCommand.self, TLSCommand.self, OpsCommand.self,
                      HTMLCommand.self]
    )
}

/// Options every benchmark takes.
struct BenchOutputOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Also write the results as JSON to FILE.", valueName: "FILE"))
    var json: String?

    @Option(help: ArgumentHelp("Write report.md and SVG charts into DIR.", valueName: "DIR"))
    var report: String?

    @Flag(help: "A short run (under a minute) with smaller files.")
    var quick = false

    /// `peach mount` processes started by a benchmark run this very binary, unless $PEACH_BINARY
    /// names another (to measure an older build with this one's suites).
    func useThisBinaryForMounts() {
        if ProcessInfo.processInfo.environment["PEACH_BINARY"] != nil { return }
        if let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            setenv("PEACH_BINARY", path, 1)
        }
    }

    /// Prints the table and writes what --json and --report ask for.
    func emit(_ report: BenchReport) throws {
        print(report.table(), terminator: "")
        if let json { try report.json().write(to: URL(fileURLWithPath: json)) }
        if let directory = self.report {
            try report.writeReport(to: directory, date: today, command: commandLine)
            print("report: \(directory)/report.md")
        }
    }

    var commandLine: String { (["peach"] + CommandLine.arguments.dropFirst()).joined(separator: " ") }

    var today: String {
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyy-MM-dd"
        return formatter.string(from: Date())
    }
}

struct OSTEPCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ostep",
        abstract: "The eleven workloads of OSTEP's AFS-versus-NFS comparison, for both designs."
    )

    @OptionGroup var output: BenchOutputOptions

    @Flag(help: "Run the clients as real FUSE mounts instead of in-process.")
    var mount = false

    @Option(help: "Only these workloads, e.g. 1,6,7.")
    var only: String?

    func validate() throws {
        if let only, only.split(separator: ",").contains(where: { Int($0).map { !(1...11).contains($0) } ?? true }) {
            throw CommandFailure("--only takes workload numbers from 1 to 11, comma-separated")
        }
    }

    func run() throws {
        output.useThisBinaryForMounts()
        let sizes: OSTEPSuite.Sizes = output.quick ? .quick : .full
        let suite = OSTEPSuite(sizes: sizes, mounted: mount)
        let rows = try suite.run(only: only.map { Set($0.split(separator: ",").compactMap { Int($0) }) })
        try output.emit(OSTEPReport(rows: rows, sizes: sizes, mounted: mount))
    }
}

struct AndrewCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "andrew",
        abstract: "The Andrew benchmark's five phases through real mounts of both designs and a local directory."
    )

    @OptionGroup var output: BenchOutputOptions

    @Option(help: "Use this source tree instead of the generated one (its Make phase runs only if its Makefile has an andrew target).")
    var tree: String?

    @Option(help: "Serve Prometheus metrics while it runs: the server's at http://HOST:PORT/metrics, the AFS-mode mount's at PORT+1, the NFS-mode mount's at PORT+2.")
    var metrics: String?

    func validate() throws {
        if let metrics {
            try MetricsEndpoint.validate(metrics)
            guard let port = ServerAddress(metrics)?.port, port > 0, port < 65534 else {
                throw CommandFailure("--metrics needs a fixed port (the mounts use the next two)")
            }
        }
    }

    func run() throws {
        output.useThisBinaryForMounts()
        if let reason = MountSupport.unavailableReason { throw CommandFailure(reason) }
        let sourceTree = try tree.map { try SourceTree(loading: $0) } ?? SourceTree()
        // The server of the cluster running now: each design gets a fresh one.
        let current = NIOLockedValueBox<FileServer?>(nil)
        let endpoint = try metrics.map { address in
            try MetricsEndpoint.start(address: address) { current.withLockedValue { $0 }?.refreshMetrics() }
        }
        defer { endpoint?.stop() }
        let hooks = metrics.map { address -> BenchMetricsHooks in
            let parsed = ServerAddress(address)!
            return BenchMetricsHooks(serverStarted: { server in current.withLockedValue { $0 = server } }, mountArguments: { design in
                ["--metrics", "\(parsed.host):\(parsed.port + (design == .afs ? 1 : 2))"]
            })
        }
        if let metrics { print("metrics: http://\(metrics)/metrics (server), ports +1 (AFS-mode mount) and +2 (NFS-mode mount)") }
        let rows = try AndrewSuite(tree: sourceTree, metrics: hooks).run()
        try output.emit(AndrewReport(rows: rows, tree: sourceTree))
    }
}

struct ScaleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scale",
        abstract: "N in-process clients at once, each running the Andrew workload, against one server process."
    )

    @OptionGroup var output: BenchOutputOptions

    @Option(help: "Client counts, comma-separated.")
    var clients = "1,2,4,8,16,32"

    func validate() throws {
        guard !counts.isEmpty, counts.allSatisfy({ (1...256).contains($0) }) else {
            throw CommandFailure("--clients takes counts from 1 to 256, comma-separated")
        }
    }

    var counts: [Int] {
        let given = clients.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        return given.contains(nil) ? [] : given.compactMap { $0 }
    }

    func run() throws {
        output.useThisBinaryForMounts()
        let rows = try ScaleSuite(clientCounts: output.quick ? counts.filter { $0 <= 8 } : counts).run()
        try output.emit(ScaleReport(rows: rows))
    }
}

struct SharingCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sharing",
        abstract: "K readers and one writer on shared files: stale reads and bytes moved, for both designs."
    )

    @OptionGroup var output: BenchOutputOptions

    @Option(help: "Number of reading clients.")
    var readers = 4

    func validate() throws {
        guard (1...64).contains(readers) else { throw CommandFailure("--readers must be between 1 and 64") }
    }

    func run() throws {
        let rows = try SharingSuite(readers: readers, rounds: output.quick ? 8 : 20).run()
        try output.emit(SharingReport(rows: rows))
    }
}

struct IOCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "io",
        abstract: "The AFS-mode mount's data path against local disk: re-read, cold fetch, small-file open-read-close."
    )

    @OptionGroup var output: BenchOutputOptions

    func run() throws {
        output.useThisBinaryForMounts()
        if let reason = MountSupport.unavailableReason { throw CommandFailure(reason) }
        let rows = try IOSuite(largeSize: output.quick ? 16 << 20 : 64 << 20, repetitions: output.quick ? 3 : 7).run()
        try output.emit(IOReport(rows: rows))
    }
}

struct TLSCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tls",
        abstract: "What mutual TLS costs: cold whole-file fetches and the Andrew benchmark through plain and TLS mounts, in one run."
    )

    @OptionGroup var output: BenchOutputOptions

    func run() throws {
        output.useThisBinaryForMounts()
        if let reason = MountSupport.unavailableReason { throw CommandFailure(reason) }
        let rows = try TLSSuite(largeSize: output.quick ? 16 << 20 : 64 << 20, repetitions: output.quick ? 3 : 7, tree: SourceTree()).run()
        try output.emit(TLSReport(rows: rows))
    }
}

struct HTMLCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "html",
        abstract: "Gather the reports in DIR's subdirectories (as --report wrote them) into DIR/index.html, one page readable offline."
    )

    @Argument(help: "The directory holding one report directory per suite (make bench: bench-report).")
    var directory = "bench-report"

    func run() throws {
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyy-MM-dd"
        do {
            let suites = try BenchIndex.write(directory: directory, date: formatter.string(from: Date()))
            print("\(directory)/index.html: \(suites.joined(separator: ", "))")
        } catch {
            throw CommandFailure("no report in \(directory)/*/report.md: run a suite with --report \(directory)/NAME first")
        }
    }
}

struct OpsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ops",
        abstract: "Latency and CPU per operation through AFS- and NFS-mode mounts, a local directory and --compare directories; postmark and cp -a."
    )

    @OptionGroup var output: BenchOutputOptions

    @Option(help: "Also measure this directory (an sshfs mount, say); may be repeated.")
    var compare: [String] = []

    @Option(help: "Operations of each kind per round.")
    var count = 300

    @Option(help: "The tree `cp -a` copies into each file system.")
    var tree = "/usr/include"

    @Option(help: "The server's --sync: always, onclose or delayed.")
    var sync: SyncPolicy?

    @Flag(help: "Put the server's root, the caches and the local directory on tmpfs (/dev/shm): the software's own cost, without the disk.")
    var tmpfs = false

    func validate() throws {
        guard (1...100_000).contains(count) else { throw CommandFailure("--count must be between 1 and 100000") }
        var isDirectory: ObjCBool = false
        for path in compare where !FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) || !isDirectory.boolValue {
            throw CommandFailure("--compare \(path): no such directory")
        }
    }

    func run() throws {
        output.useThisBinaryForMounts()
        if let reason = MountSupport.unavailableReason { throw CommandFailure(reason) }
        let suite = OpsSuite(count: output.quick ? 100 : count, rounds: output.quick ? 1 : 3, compare: compare, sync: sync?.rawValue,
                             postmarkFiles: output.quick ? 500 : 3000, postmarkTransactions: output.quick ? 2000 : 12000,
                             copyTree: output.quick && tree == "/usr/include" ? "/usr/include/linux" : tree, tmpfs: tmpfs)
        try output.emit(OpsReport(results: try suite.run()))
    }
}
