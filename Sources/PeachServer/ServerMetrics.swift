import Dispatch
import Metrics
import PeachProtocol
import Synchronization

/// The file server's metrics, through swift-metrics: `peach server --metrics` serves them in the
/// Prometheus text format (docs/operations.md lists them). Made with the volume store; with no
/// metrics backend bootstrapped they cost next to nothing.
///
/// What `ServerStatistics` already counts (requests, breaks, unreachable clients) is published
/// from it by `refresh`, which the endpoint runs before each scrape, so requests pay nothing
/// twice and a scrape agrees with the statistics. The gauges read from state are set there too.
/// Durations and bytes are recorded as they happen.
public final class ServerMetrics: Sendable {
    private let requests: [String: Counter]
    private let requestDurations: [Opcode: Timer]
    let receivedBytes = Counter(label: "peach_server_received_bytes_total")
    let sentBytes = Counter(label: "peach_server_sent_bytes_total")
    let callBacksGranted = Counter(label: "peach_server_callbacks_granted_total")
    private let callBacksBroken = Counter(label: "peach_server_callbacks_broken_total")
    /// Clients that did not acknowledge a break in time and lost every promise.
    private let callBackTimeouts = Counter(label: "peach_server_callback_timeouts_total")
    /// From a mutation's commit until every client it broke acknowledged (or was given up).
    let breakDuration = Timer(label: "peach_server_break_duration_seconds")
    /// Write transactions, the wait for SQLite's single writer included.
    let transactionDuration = Timer(label: "peach_server_transaction_duration_seconds")
    let fsyncDuration = Timer(label: "peach_server_fsync_duration_seconds")
    private let callBacksHeld = Gauge(label: "peach_server_callbacks_held")
    private let clientsConnected = Gauge(label: "peach_server_clients_connected")
    private let volumeBytes = Gauge(label: "peach_server_volume_bytes")
    private let volumeFiles = Gauge(label: "peach_server_volume_files")
    /// The statistics as last published.
    private let published = Mutex(ServerStatistics.Snapshot())

    public init() {
        requests = Dictionary(uniqueKeysWithValues: Opcode.allCases.map {
            ($0.name, Counter(label: "peach_server_requests_total", dimensions: [("op", $0.name)]))
        })
        requestDurations = Dictionary(uniqueKeysWithValues: Opcode.allCases.map {
            ($0, Timer(label: "peach_server_request_duration_seconds", dimensions: [("op", $0.name)]))
        })
    }

    /// A request answered: from its arrival until its reply (and any content) was written.
    func requestAnswered(_ opcode: Opcode, after nanoseconds: Int64) {
        requestDurations[opcode]?.recordNanoseconds(nanoseconds)
    }

    /// Publishes what `statistics` counted since the last call, and sets the gauges read from state.
    func refresh(statistics: ServerStatistics.Snapshot, store: VolumeStore, connectedClients: Int) {
        let before = published.withLock { last in
            defer { last = statistics }
            return last
        }
        for (name, count) in statistics.requests where count > before.requests[name, default: 0] {
            requests[name]?.increment(by: count - before.requests[name, default: 0])
        }
        if statistics.callBacksBroken > before.callBacksBroken {
            callBacksBroken.increment(by: statistics.callBacksBroken - before.callBacksBroken)
        }
        if statistics.clientsDeclaredUnreachable > before.clientsDeclaredUnreachable {
            callBackTimeouts.increment(by: statistics.clientsDeclaredUnreachable - before.clientsDeclaredUnreachable)
        }
        clientsConnected.record(connectedClients)
        if let held = try? store.callBackCount() { callBacksHeld.record(held) }
        if let bytes = try? store.volumeBytes() { volumeBytes.record(Int64(clamping: bytes)) }
        if let files = try? store.fileCount() { volumeFiles.record(files) }
    }

    /// Runs `body` and records how long it took in `timer`.
    static func time<T>(_ timer: Timer, _ body: () throws -> T) rethrows -> T {
        let start = DispatchTime.now().uptimeNanoseconds
        defer { timer.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - start)) }
        return try body()
    }
}
