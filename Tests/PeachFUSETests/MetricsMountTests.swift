import Foundation
import PeachLocalCluster
import PeachSupport
import PeachTesting
import Testing

/// `--metrics HOST:PORT` on a real `peach server` and real mounts, scraped over HTTP as
/// Prometheus would: the counters move as the workload says (issue 10).
@Suite("Real FUSE mounts: Prometheus metrics", .serialized,
       .enabled(if: MountSupport.unavailableReason == nil, "\(MountSupport.unavailableReason ?? "")"))
struct MetricsMountTests {
    /// A loopback port nobody listens on now.
    /// GET `path` on the port with curl; the status code and the body.
    func get(_ port: Int, _ path: String = "/metrics") throws -> (status: Int, body: String) {
        let result = try shell("curl -s -w '\\n%{http_code}' http://127.0.0.1:\(port)\(path)")
        var lines = result.output.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        while lines.last == "" { lines.removeLast() }
        let status = Int(lines.popLast() ?? "") ?? 0
        return (status, lines.joined(separator: "\n"))
    }

    /// A scrape: each sample line's series (name and labels, as written) → value.
    func scrape(_ port: Int) throws -> [String: Double] {
        let (status, body) = try get(port)
        #expect(status == 200)
        var samples: [String: Double] = [:]
        for line in body.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            samples[String(line[..<space])] = value
        }
        return samples
    }

    @Test("a server and a mount serve their metrics; requests, breaks, fetches and hits move as the workload says")
    func countersMove() throws {
        let serverPort = try LoopbackSocket.freePort()
        try withMounts(serverArguments: ["--metrics", "127.0.0.1:\(serverPort)"]) { cluster in
            let mountPort = try LoopbackSocket.freePort()
            let a = try cluster.mount("a", design: .afs, extraArguments: ["--metrics", "127.0.0.1:\(mountPort)"])
            let b = try cluster.mount("b", design: .afs)
            let server0 = try scrape(serverPort)
            let content = String(repeating: "peach ", count: 2000)
            #expect(try Files.write(b.path + "/f", content) == 0)  // CreateFile, StoreData
            #expect(Files.size(a.path + "/f") == content.utf8.count)  // a fetches the directory
            let a0 = try scrape(mountPort)

            #expect(Files.read(a.path + "/f") == content)          // a fetches the file: a miss
            #expect(Files.read(a.path + "/f") == content)          // under the callback: a hit
            #expect(try Files.write(b.path + "/f", "new") == 0)    // StoreData breaks a's callback
            #expect(Files.read(a.path + "/f") == "new")

            let server1 = try scrape(serverPort)
            let a1 = try scrape(mountPort)
            func moved(_ before: [String: Double], _ after: [String: Double], _ series: String) -> Double {
                (after[series] ?? 0) - (before[series] ?? 0)
            }
            #expect(moved(server0, server1, "peach_server_requests_total{op=\"StoreData\"}") == 2)
            #expect(moved(server0, server1, "peach_server_requests_total{op=\"CreateFile\"}") == 1)
            #expect(moved(server0, server1, "peach_server_request_duration_seconds_count{op=\"StoreData\"}") == 2)
            #expect(moved(server0, server1, "peach_server_callbacks_broken_total") >= 1)
            #expect(moved(server0, server1, "peach_server_callbacks_granted_total") >= 2)
            #expect(moved(server0, server1, "peach_server_received_bytes_total") >= Double(content.utf8.count))
            #expect(moved(server0, server1, "peach_server_sent_bytes_total") >= Double(content.utf8.count))
            #expect(moved(server0, server1, "peach_server_fsync_duration_seconds_count") >= 1)
            #expect(moved(server0, server1, "peach_server_break_duration_seconds_count") >= 1)
            #expect(server1["peach_server_clients_connected"] == 2)
            #expect((server1["peach_server_volume_files"] ?? 0) >= 1)
            #expect((server1["peach_server_callbacks_held"] ?? 0) >= 1)

            #expect(moved(a0, a1, "peach_cache_opens_total") == 3)
            #expect(moved(a0, a1, "peach_cache_open_hits_total") == 1)
            #expect(moved(a0, a1, "peach_cache_fetches_total") == 2)
            #expect(moved(a0, a1, "peach_cache_fetched_bytes_total") == Double(content.utf8.count + 3))
            #expect(moved(a0, a1, "peach_cache_breaks_received_total") >= 1)
            #expect(moved(a0, a1, "peach_cache_request_duration_seconds_count{op=\"FetchData\"}") == 2)
            #expect(a1["peach_cache_server_reachable"] == 1)
            #expect(a1["peach_cache_limit_bytes"] == Double(2 << 30))

            // The counters agree with `peach fs stats`.
            let stats = try Files.stats(a)
            #expect(a1["peach_cache_opens_total"] == Double(Files.counter(stats, "opens")))

            #expect(try get(serverPort, "/other").status == 404)
        }
    }

    @Test("16 connections that trickle their headers keep no scrape out: a new one closes the oldest, and none outlives 5 s")
    func slowConnectionsBounded() throws {
        let serverPort = try LoopbackSocket.freePort()
        try withMounts(serverArguments: ["--metrics", "127.0.0.1:\(serverPort)"]) { _ in
            var slow: [Int32] = []
            defer { slow.forEach { close($0) } }
            func send(_ fd: Int32, _ text: String) -> Bool {
                Array(text.utf8).withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } > 0
            }
            for _ in 0..<16 {
                guard let fd = LoopbackSocket.connected(port: serverPort) else { Issue.record("connect failed"); return }
                _ = send(fd, "GET /metrics HTTP/1.1\r\nHost: x\r\n")
                slow.append(fd)
            }
            Thread.sleep(forTimeInterval: 0.3)  // all 16 accepted
            // A scrape gets in: it closes the oldest (before, the 17th was refused at once).
            let scraped = try get(serverPort).status
            #expect(scraped == 200)
            // The rest keep trickling a header line every half second: each is closed by its deadline.
            var open = Set(slow)
            let until = Date().addingTimeInterval(8)
            while !open.isEmpty && Date() < until {
                for fd in open {
                    var byte: UInt8 = 0
                    if !send(fd, "X-Slow: 1\r\n") || recv(fd, &byte, 1, Int32(MSG_DONTWAIT)) == 0 { open.remove(fd) }
                }
                Thread.sleep(forTimeInterval: 0.5)
            }
            #expect(open.isEmpty, "\(open.count) trickling connections outlived the deadline")
            let scrapedAgain = try get(serverPort).status
            #expect(scrapedAgain == 200)
        }
    }

    @Test("--metrics takes HOST:PORT, and a port already taken is a clear error")
    func badAddress() throws {
        let peach = "'\(MountSupport.peachBinary)'"
        let directory = try TemporaryDirectory(prefix: "peach-metrics")
        defer { directory.remove() }
        // Under `timeout`: were the option accepted, the server would run on and hold the test.
        let malformed = try shell("timeout 20 \(peach) server --root '\(directory.path)/r' --metrics nonsense 2>&1")
        #expect(malformed.status != 0)
        #expect(malformed.output.contains("--metrics must be HOST:PORT"))
        // A port someone else listens on.
        let (listener, port) = try LoopbackSocket.listening(backlog: 1)
        defer { close(listener) }
        let taken = try shell("timeout 20 \(peach) server --root '\(directory.path)/r' --listen 127.0.0.1:0 --metrics 127.0.0.1:\(port) 2>&1")
        #expect(taken.status != 0)
        #expect(taken.output.contains("cannot serve metrics on 127.0.0.1:\(port)"))
    }
}
