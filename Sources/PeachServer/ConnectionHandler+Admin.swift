import Foundation
import NIOCore
import NIOPosix
import PeachProtocol

/// Admin requests (`peach admin`): answered without a Hello, to root on the server's machine and
/// to the machines named in `--admin` (by their certificate), refused to anyone else.
extension ConnectionHandler {
    func administer(_ query: AdminQuery, id: UInt32, context: ChannelHandlerContext) {
        let opcode = Opcode.admin.rawValue
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let known = principal
        let (peer, local) = (context.channel.remoteAddress, context.channel.localAddress)
        let server = self.server
        server.threadPool.runIfActive(eventLoop: context.eventLoop) { () -> (Principal, AdminDesk.Answer?) in
            let principal = try known ?? LoopbackPeer.requirePrincipal(peer: peer, local: local)
            guard server.identityPolicy.mayAdminister(principal) else { return (principal, nil) }
            return (principal, try AdminDesk(server: server).answer(query))
        }.whenComplete { result in
            let handler = loopBound.value
            // Looked up once per connection (the socket table is read for it).
            if handler.principal == nil, case .success((let principal, _)) = result { handler.principal = principal }
            switch result {
            case .success((let principal, nil)):
                // Once per connection: a peer repeating the question must not fill the log.
                if !handler.refusalLogged {
                    handler.refusalLogged = true
                    server.logger.notice("admin request refused", metadata: ["principal": "\(principal)", "query": "\(query)"])
                }
                handler.sendError(.accessDenied, id: id, opcode: opcode)
            case .success((let principal, .report(let json)?)):
                server.logger.info("admin request", metadata: ["principal": "\(principal)", "query": "\(query)"])
                handler.sendReply(.adminReport(json), id: id, opcode: opcode)
            case .success((let principal, .backup(let backup)?)):
                server.logger.notice("backup sent", metadata: ["principal": "\(principal)", "bytes": "\(backup.size)",
                                                              "files": "\(backup.files)",
                                                              "writerHeldMs": "\(String(format: "%.1f", backup.writerHeldMilliseconds))"])
                handler.sendReply(.backup(size: backup.size), id: id, opcode: opcode, finishesRequest: false)
                handler.stream(.file(backup.handle, length: backup.size), id: id, opcode: opcode)
            case .failure(let error as StatusCode):
                handler.sendError(error, id: id, opcode: opcode)
            case .failure(let error):
                server.logger.warning("admin request failed", metadata: ["query": "\(query)", "error": "\(error)"])
                handler.sendError(.ioError, id: id, opcode: opcode)
            }
        }
    }
}

/// Answers an administrator's questions from the registry, the statistics and the database.
struct AdminDesk {
    enum Answer {
        case report([UInt8])
        case backup(VolumeStore.Backup)
    }

    let server: FileServerContext

    func answer(_ query: AdminQuery) throws -> Answer {
        switch query {
        case .clients:
            let report = try clients()
            return .report(Self.fit(report.clients, omitted: report.omitted, AdminReports.Clients.init))
        case .callBacks(let path, let client):
            let report = try server.store.callBacks(under: path, client: client)
            return .report(Self.fit(report.callBacks, omitted: report.omitted, AdminReports.CallBacks.init))
        case .statistics:
            return .report(AdminReports.encode(try statistics()))
        case .backup:
            return .backup(try server.store.backup())
        }
    }

    /// The most bytes of JSON a report may take: one frame, with room for the reply's header.
    static let reportLimit = Frame.maximumBodySize - 64 * 1024

    /// The report of as many of `rows` as fit in `reportLimit` (long paths can make 10,000 rows
    /// too many), the rest counted as omitted.
    static func fit<Row, Report: Encodable>(_ rows: [Row], omitted: Int, _ report: ([Row], Int) -> Report) -> [UInt8] {
        var shown = rows[...]
        while true {
            let json = AdminReports.encode(report(Array(shown), omitted + rows.count - shown.count))
            if json.count <= reportLimit || shown.isEmpty { return json }
            shown = shown.dropLast(max(1, shown.count / 4))
        }
    }

    /// Connected clients, then those away that still hold promises.
    func clients() throws -> AdminReports.Clients {
        let connected = server.registry.connectedClients()
        let holders = try server.store.callBackHolders()
        var rows = connected.map { id, entry in
            AdminReports.Client(id: id, name: entry.name, address: entry.address, design: "\(entry.design)",
                                connectedSince: entry.connectedSince.timeIntervalSince1970, lastSeen: Date().timeIntervalSince1970,
                                callBacksHeld: holders[id]?.count ?? 0, lastBreakMilliseconds: entry.lastBreakNanoseconds.map { Double($0) / 1e6 },
                                reachable: true)
        }.sorted { $0.connectedSince ?? 0 < $1.connectedSince ?? 0 }
        for (id, holder) in holders.sorted(by: { $0.key < $1.key }) where connected[id] == nil {
            rows.append(AdminReports.Client(id: id, name: "-", address: nil, design: nil, connectedSince: nil,
                                            lastSeen: Double(holder.lastSeen), callBacksHeld: holder.count,
                                            lastBreakMilliseconds: nil, reachable: false))
        }
        let omitted = max(0, rows.count - AdminReports.maximumRows)
        return AdminReports.Clients(clients: Array(rows.prefix(AdminReports.maximumRows)), omitted: omitted)
    }

    func statistics() throws -> AdminReports.Statistics {
        let counted = server.statistics.snapshot()
        let inline = try server.store.inlineUsage()
        return AdminReports.Statistics(
            epoch: server.store.epoch, startedAt: server.startedAt.timeIntervalSince1970, requests: counted.requests,
            callBacksBroken: counted.callBacksBroken, breakMessagesSent: counted.breakMessagesSent,
            clientsDeclaredUnreachable: counted.clientsDeclaredUnreachable,
            callBacksHeld: try server.store.callBackHolders().values.reduce(0) { $0 + $1.count },
            clientsConnected: server.registry.connectedClients().count, volumeBytes: Int64(clamping: try server.store.volumeBytes()),
            volumeFiles: Int64(try server.store.fileCount()), inlineFiles: Int64(inline.files), inlineBytes: inline.bytes)
    }
}
