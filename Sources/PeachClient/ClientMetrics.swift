import Metrics
import PeachProtocol
import Synchronization

/// A cache manager's metrics, through swift-metrics: `peach mount --metrics` serves them in the
/// Prometheus text format (docs/operations.md lists them). With no metrics backend bootstrapped
/// they cost next to nothing.
///
/// The counters are the statistics' own: `publish`, which the endpoint runs before each scrape,
/// moves them by what the statistics counted since, so reads and writes pay nothing for metrics
/// and a scrape agrees with `peach fs stats`. Only round trips are recorded as they happen.
final class ClientMetrics: Sendable {
    private let opens = Counter(label: "peach_cache_opens_total")
    private let openHits = Counter(label: "peach_cache_open_hits_total")
    private let fetches = Counter(label: "peach_cache_fetches_total")
    private let fetchedBytes = Counter(label: "peach_cache_fetched_bytes_total")
    private let stores = Counter(label: "peach_cache_stores_total")
    private let storedBytes = Counter(label: "peach_cache_stored_bytes_total")
    private let evictions = Counter(label: "peach_cache_evictions_total")
    private let breaksReceived = Counter(label: "peach_cache_breaks_received_total")
    private let conflicts = Gauge(label: "peach_cache_conflicts")
    private let usedBytes = Gauge(label: "peach_cache_used_bytes")
    private let serverReachable = Gauge(label: "peach_cache_server_reachable")
    private let requests: [String: Counter]
    private let requestDurations: [Opcode: Timer]
    /// `--cache-size`, set once by the design.
    let limitBytes = Gauge(label: "peach_cache_limit_bytes")
    /// The statistics as last published.
    private let published: Mutex<ClientStatistics.Snapshot>

    init(mode: String) {
        requests = Dictionary(uniqueKeysWithValues: Opcode.allCases.map {
            ($0.name, Counter(label: "peach_cache_requests_total", dimensions: [("op", $0.name)]))
        })
        requestDurations = Dictionary(uniqueKeysWithValues: Opcode.allCases.map {
            ($0, Timer(label: "peach_cache_request_duration_seconds", dimensions: [("op", $0.name)]))
        })
        published = Mutex(ClientStatistics.Snapshot(mode: mode))
    }

    /// Moves the counters by what `now` counted since the last call, and sets the gauges.
    func publish(_ now: ClientStatistics.Snapshot) {
        let before = published.withLock { last in
            defer { last = now }
            return last
        }
        func count<Value: BinaryInteger>(_ counter: Counter, _ old: Value, _ new: Value) {
            if new > old { counter.increment(by: Int64(clamping: new - old)) }
        }
        count(opens, before.opens, now.opens)
        count(openHits, before.openHits, now.openHits)
        count(fetches, before.fetches, now.fetches)
        count(fetchedBytes, before.fetchedBytes, now.fetchedBytes)
        count(stores, before.stores, now.stores)
        count(storedBytes, before.storedBytes, now.storedBytes)
        count(evictions, before.evictions, now.evictions)
        count(breaksReceived, before.callbacksReceived, now.callbacksReceived)
        for (name, total) in now.rpcs { if let counter = requests[name] { count(counter, before.rpcs[name, default: 0], total) } }
        usedBytes.record(Int64(clamping: now.cacheBytes))
        conflicts.record(now.conflicts)
        serverReachable.record(now.serverReachable ? 1 : 0)
    }

    /// A request answered, `nanoseconds` after it was sent.
    func requestAnswered(_ opcode: Opcode, after nanoseconds: Int64) {
        requestDurations[opcode]?.recordNanoseconds(nanoseconds)
    }
}
