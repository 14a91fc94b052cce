import Foundation
import PeachClient
import PeachLocalCluster
import PeachProtocol
import PeachSupport

/// `peach bench scale`: N in-process clients at once, each running the Andrew workload in its
/// own subtree against one server process (the 1988 AFS paper's load-unit experiment).
public struct ScaleSuite: Sendable {
    public struct Row: Codable, Sendable {
        public var clients: Int
        public var design: String
        public var secondsPerClient: Double
        public var requestsPerClient: Double
        public var serverCPUSeconds: Double
        public var serverCPUSecondsPerClient: Double
    }

    public let clientCounts: [Int]
    public let workload: AndrewWorkload

    public init(clientCounts: [Int], tree: SourceTree = SourceTree()) {
        self.clientCounts = clientCounts
        workload = AndrewWorkload(tree: tree)
    }

    public func run(progress: Progress = Progress()) throws -> [Row] {
        var rows: [Row] = []
        for count in clientCounts {
            for design in ClientDesign.allCases {
                progress.show("scale: \(count) \(design) clients")
                rows.append(try run(clients: count, design: design))
            }
        }
        progress.done()
        return rows
    }

    private func run(clients count: Int, design: ClientDesign) throws -> Row {
        let server = try ServerProcess()
        defer { server.stop() }
        let caches = try TemporaryDirectory(prefix: "peach-bench-caches")
        defer { caches.remove() }
        let writer = try AFSCacheManager(server: server.address, cacheDirectory: caches.path + "/writer", cacheSize: 1 << 30)
        try writer.start()
        let writerFS = InProcessFileSystem(writer)
        for i in 0..<count {
            try writerFS.makeDirectory("/c\(i)")
            try workload.writeSource(to: writerFS, root: "/c\(i)/src")
        }
        writer.shutdown()
        var managers: [CacheManager] = []
        defer { managers.forEach { $0.shutdown() } }
        for i in 0..<count {
            let manager: CacheManager = design == .afs
                ? try AFSCacheManager(server: server.address, cacheDirectory: caches.path + "/c\(i)", cacheSize: 1 << 30)
                : NFSCacheManager(server: server.address, options: NFSOptions())
            try manager.start()
            managers.append(manager)
        }
        let results = ResultsBox(count: count)
        let cpuBefore = server.cpuSeconds
        let workload = self.workload
        let clients = managers.map { InProcessFileSystem($0) }
        try concurrently(count) { i in
            let fs = clients[i]
            let m = try measure(fs, applicationBytesRead: nil) {
                for phase in AndrewWorkload.Phase.allCases {
                    try workload.run(phase, on: fs, source: "/c\(i)/src", target: "/c\(i)/t")
                }
            }
            results.set(i, m)
        }
        let cpu = server.cpuSeconds - cpuBefore
        let measurements = results.all
        return Row(clients: count, design: design.rawValue,
                   secondsPerClient: measurements.map(\.seconds).reduce(0, +) / Double(count),
                   requestsPerClient: Double(measurements.map(\.serverRequests).reduce(0, +)) / Double(count),
                   serverCPUSeconds: cpu, serverCPUSecondsPerClient: cpu / Double(count))
    }
}

/// Per-client results filled in from the client threads.
final class ResultsBox: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [Measurement?]

    init(count: Int) { values = Array(repeating: nil, count: count) }

    func set(_ i: Int, _ m: Measurement) {
        lock.lock()
        values[i] = m
        lock.unlock()
    }

    var all: [Measurement] {
        lock.lock()
        defer { lock.unlock() }
        return values.compactMap { $0 }
    }
}

public struct ScaleReport: BenchReport {
    public var rows: [ScaleSuite.Row]

    public init(rows: [ScaleSuite.Row]) { self.rows = rows }

    public func table() -> String {
        var table = TextTable(["clients", "design", "time/client", "requests/client", "server CPU", "server CPU/client"])
        for r in rows {
            table.add(["\(r.clients)", r.design, formatSeconds(r.secondsPerClient), String(format: "%.0f", r.requestsPerClient),
                       formatSeconds(r.serverCPUSeconds), formatSeconds(r.serverCPUSecondsPerClient)])
        }
        var out = table.render()
        if let n = rows.map(\.clients).max(),
           let afs = rows.first(where: { $0.clients == n && $0.design == "afs" }),
           let nfs = rows.first(where: { $0.clients == n && $0.design == "nfs" }), afs.requestsPerClient > 0 {
            out += String(format: "at %d clients the NFS-style server handles %.1f times the requests per client of the AFS-mode server\n",
                          n, nfs.requestsPerClient / afs.requestsPerClient)
        }
        return out
    }

    public func json() throws -> Data { try benchJSON(suite: "scale", rows: rows) }

    public func writeReport(to directory: String, date: String, command: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let counts = Array(Set(rows.map(\.clients))).sorted()
        func series(_ value: (ScaleSuite.Row) -> Double) -> [SVGChart.Series] {
            [("afs", "AFS mode", SVGChart.afsColor), ("nfs", "NFS mode", SVGChart.nfsColor)].map { design, name, color in
                .init(name: name, color: color, values: counts.map { n in rows.first { $0.clients == n && $0.design == design }.map(value) ?? 0 })
            }
        }
        let x = counts.map(Double.init)
        try SVGChart.lines(title: "Server CPU seconds per client", xLabel: "clients", yLabel: "CPU seconds", x: x,
                           series: series(\.serverCPUSecondsPerClient))
            .write(toFile: directory + "/scale-cpu.svg", atomically: true, encoding: .utf8)
        try SVGChart.lines(title: "Server requests per client", xLabel: "clients", yLabel: "requests", x: x,
                           series: series(\.requestsPerClient))
            .write(toFile: directory + "/scale-requests.svg", atomically: true, encoding: .utf8)
        try SVGChart.lines(title: "Time per client (Andrew workload)", xLabel: "clients", yLabel: "seconds", x: x,
                           series: series(\.secondsPerClient))
            .write(toFile: directory + "/scale-time.svg", atomically: true, encoding: .utf8)
        try json().write(to: URL(fileURLWithPath: directory + "/scale.json"))
        let md = """
            # PeachFS: load scaling

            Measured \(date) with `\(command)`. N in-process clients at once, each running the Andrew
            workload (Make simulated: sources read, objects written) in its own subtree, against one
            `peach server` process whose CPU time is measured.

            ![time](scale-time.svg)

            ![requests](scale-requests.svg)

            ![cpu](scale-cpu.svg)

            ```
            \(table())```

            """
        try md.write(toFile: directory + "/report.md", atomically: true, encoding: .utf8)
    }
}
