import ArgumentParser
import Foundation
import NIOCore
import PeachClient
import PeachProtocol
import PeachSecurity
import PeachSupport

struct AdminCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "admin",
        abstract: "Ask a file server who holds what, its counters, or for a backup (docs/operations.md).",
        discussion: """
            Over the server's own port. Root on the server's machine may ask over plain TCP when \
            the server runs without TLS. Otherwise, root included, only over mutual TLS, with a \
            certificate whose machine the server names in --admin.
            """,
        subcommands: [Clients.self, CallBacks.self, Stats.self, Backup.self]
    )

    struct Clients: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The connected cache managers, and those away that still hold callbacks.")
        @OptionGroup var server: AdminServer

        func run() throws {
            try server.show(.clients) { (report: AdminReports.Clients) in
                var table = TextTable(["client", "name", "address", "design", "connected since", "callbacks", "last break", "reachable"])
                for c in report.clients {
                    table.add([c.id, c.name, c.address ?? "-", c.design ?? "-", c.connectedSince.map(AdminServer.time) ?? "-",
                               "\(c.callBacksHeld)", c.lastBreakMilliseconds.map { String(format: "%.1f ms", $0) } ?? "-",
                               c.reachable ? "yes" : "no (last seen \(c.lastSeen.map(AdminServer.time) ?? "never"))"])
                }
                print("\(report.clients.count) clients" + (report.omitted > 0 ? " (\(report.omitted) more not shown)" : ""))
                if !report.clients.isEmpty { print(table.render(), terminator: "") }
            }
        }
    }

    struct CallBacks: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "callbacks", abstract: "Who holds a callback promise on what.")
        @OptionGroup var server: AdminServer
        @Option(help: "Only promises on this path of the volume and beneath it (e.g. /src).") var path = "/"
        @Option(help: "Only the promises of this client id (see `peach admin clients`).") var client = ""

        func run() throws {
            try server.show(.callBacks(path: path, client: client)) { (report: AdminReports.CallBacks) in
                var table = TextTable(["path", "FID", "client", "expires in"])
                let now = Date().timeIntervalSince1970
                for c in report.callBacks {
                    table.add([c.path, c.fid, c.client, String(format: "%.0f s", max(0, c.expiresAt - now))])
                }
                print("\(report.callBacks.count) callbacks" + (report.omitted > 0 ? " (\(report.omitted) more not shown)" : ""))
                if !report.callBacks.isEmpty { print(table.render(), terminator: "") }
            }
        }
    }

    struct Stats: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The server's counters.")
        @OptionGroup var server: AdminServer

        func run() throws {
            try server.show(.statistics) { (s: AdminReports.Statistics) in
                var summary = TextTable(["server", "value"])
                summary.add(["epoch", "\(s.epoch)"])
                summary.add(["up since", AdminServer.time(s.startedAt)])
                summary.add(["clients connected", "\(s.clientsConnected)"])
                summary.add(["callbacks held", "\(s.callBacksHeld)"])
                summary.add(["callbacks broken", "\(s.callBacksBroken) in \(s.breakMessagesSent) messages"])
                summary.add(["clients declared unreachable", "\(s.clientsDeclaredUnreachable)"])
                summary.add(["volume", "\(formatBytes(UInt64(max(0, s.volumeBytes)))) in \(s.volumeFiles) files"])
                if let files = s.inlineFiles, let bytes = s.inlineBytes {
                    summary.add(["small files in the database", "\(files), \(formatBytes(UInt64(max(0, bytes))))"])
                }
                print(summary.render(), terminator: "")
                var requests = TextTable(["request", "count"])
                for (name, count) in s.requests.sorted(by: { $0.value > $1.value }) { requests.add([name, "\(count)"]) }
                print("")
                print(requests.render(), terminator: "")
            }
        }
    }

    struct Backup: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a consistent snapshot of the volume to FILE (a tar archive; `peach server --restore` reads it).")
        @OptionGroup var server: AdminServer
        @Option(help: "The archive to write; it must not exist yet.") var out: String
        @Option(help: "Minutes to wait for the server to pack and send it.") var timeout = 360

        func run() throws {
            let partial = out + ".partial"
            guard !FileManager.default.fileExists(atPath: out) else { throw CommandFailure("\(out) exists already: name a new file") }
            let fd = open(partial, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw CommandFailure("cannot create \(partial): \(String(cString: strerror(errno)))") }
            var kept = false
            defer {
                close(fd)
                if !kept { unlink(partial) }
            }
            let size: UInt64
            do {
                let connection = try server.connect()
                defer { connection.close() }
                // On the connection's event loop, which then reads no more until the disk took
                // the chunk: a slow disk slows the transfer rather than filling memory.
                size = try connection.backup(limit: .minutes(Int64(timeout))) { chunk in
                    if let code = WholeWrite.write(chunk, to: fd) { throw FileSystemError(code, "writing \(partial)") }
                }
            } catch {
                throw CommandFailure("backup failed: \(server.explain(error))")
            }
            var st = stat()
            guard fsync(fd) == 0, fstat(fd, &st) == 0, UInt64(st.st_size) == size else {
                throw CommandFailure("backup failed: wrote \(st.st_size) of \(size) bytes to \(partial)")
            }
            guard rename(partial, out) == 0 else { throw CommandFailure("cannot name the backup \(out): \(String(cString: strerror(errno)))") }
            kept = true
            if server.json {
                print("{\"bytes\":\(size),\"out\":\(String(decoding: try JSONEncoder().encode(out), as: UTF8.self)),\"server\":\"\(server.server)\"}")
            } else {
                print("backup of \(server.server): \(formatBytes(size)) written to \(out)")
            }
        }
    }
}

/// `--server ADDR`, TLS and `--json`, for every admin subcommand.
struct AdminServer: ParsableArguments {
    @Option(help: "The file server, HOST:PORT.") var server = "127.0.0.1:7000"
    @OptionGroup(title: "Mutual TLS (see the security guide)") var tls: TLSOptions
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        guard ServerAddress(server) != nil else { throw CommandFailure("--server must be HOST:PORT, got '\(server)'") }
    }

    func connect() throws -> ServerConnection {
        let clientTLS: ClientTLS?
        do { clientTLS = try tls.files.map { try ClientTLS(files: $0) } } catch { throw CommandFailure("cannot set up TLS: \(error)") }
        return ServerConnection(address: ServerAddress(server)!, clientID: "admin", epoch: 0, statistics: ClientStatistics(mode: "admin"),
                                tls: clientTLS, retry: .failFast, introduces: false)
    }

    /// Asks `query`; prints the JSON as it came with `--json`, else hands the report to `text`.
    func show<Report: Decodable>(_ query: AdminQuery, _ text: (Report) throws -> Void) throws {
        let connection = try connect()
        defer { connection.close() }
        let json: [UInt8]
        do {
            json = try connection.admin(query)
        } catch let error as FileSystemError where error.serverCode == .accessDenied {
            throw CommandFailure("\(server) refused: admin questions are answered to root on the server's machine, "
                                 + "or over TLS to a machine named in the server's --admin")
        } catch let error as FileSystemError where error.serverCode == .notFound {
            if case .callBacks(let path, _) = query { throw CommandFailure("no such path in the volume: \(path)") }
            throw CommandFailure("\(server): \(error)")
        } catch {
            throw CommandFailure("\(server): \(explain(error))")
        }
        if self.json {
            print(String(decoding: json, as: UTF8.self))
        } else {
            try text(try AdminReports.decode(Report.self, from: json))
        }
    }

    /// A plain connection that a TLS-only server closes fails at its first question with only
    /// "connection closed": say what it likely means, as `peach mount` does.
    func explain(_ error: Error) -> String {
        guard tls.files == nil, let failure = error as? FileSystemError, failure.isConnectionClosed else { return "\(error)" }
        return "\(error) (the server may require TLS: --tls-cert, --tls-key and --tls-ca, "
            + "with a certificate whose machine the server names in --admin)"
    }

    static func time(_ seconds: Double) -> String {
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss"
        return formatter.string(from: Date(timeIntervalSince1970: seconds))
    }
}
