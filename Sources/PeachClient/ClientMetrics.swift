import Metrics
import PeachProtocol

/// A cache manager's metrics, through swift-metrics: `peach mount --metrics` serves them in the
/// Prometheus text format (docs/operations.md lists them). The counters follow the statistics
/// (`ClientStatistics.update` moves both), so `peach fs stats` and a scrape never disagree.
/// With no metrics backend bootstrapped they cost next to nothing.
struct ClientMetrics: Sendable {
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
    private let requests: [Opcode: Counter]
    private let requestDurations: [Opcode: Timer]
    /// `--cache-size`, set once by the design.
    let limitBytes = Gauge(label: "peach_cache_limit_bytes")

    init() {
        requests = Dictionary(uniqueKeysWithValues: Opcode.allCases.map {
            ($0, Counter(label: "peach_cache_requests_total", dimensions: [("op", $0.name)]))
        })
        requestDurations = Dictionary(uniqueKeysWithValues: Opcode.allCases.map {
            ($0, Timer(label: "peach_cache_request_duration_seconds", dimensions: [("op", $0.name)]))
        })
        serverReachable.record(1)
    }

    /// Moves the metrics by what changed between two snapshots of the statistics.
    func moved(from old: ClientStatistics.Snapshot, to new: ClientStatistics.Snapshot) {
        func count<Value: BinaryInteger>(_ counter: Counter, _ before: Value, _ after: Value) {
            if after > before { counter.increment(by: Int64(clamping: after - before)) }
        }
        count(opens, old.opens, new.opens)
        count(openHits, old.openHits, new.openHits)
        count(fetches, old.fetches, new.fetches)
        count(fetchedBytes, old.fetchedBytes, new.fetchedBytes)
        count(stores, old.stores, new.stores)
        count(storedBytes, old.storedBytes, new.storedBytes)
        count(evictions, old.evictions, new.evictions)
        count(breaksReceived, old.callbacksReceived, new.callbacksReceived)
        if new.cacheBytes != old.cacheBytes { usedBytes.record(Int64(clamping: new.cacheBytes)) }
        if new.conflicts != old.conflicts { conflicts.record(new.conflicts) }
        if new.serverReachable != old.serverReachable { serverReachable.record(new.serverReachable ? 1 : 0) }
    }

    func countRequest(_ opcode: Opcode) { requests[opcode]?.increment() }

    /// A request answered, `nanoseconds` after it was sent.
    func requestAnswered(_ opcode: Opcode, after nanoseconds: Int64) {
        requestDurations[opcode]?.recordNanoseconds(nanoseconds)
    }
}
