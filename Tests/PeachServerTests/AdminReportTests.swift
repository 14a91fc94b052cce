import Foundation
import PeachProtocol
import Testing
@testable import PeachServer

/// Admin reports travel in one reply frame, whatever the rows hold.
@Suite("Admin reports")
struct AdminReportTests {
    @Test("a report of rows too long for one frame keeps as many as fit and counts the rest as omitted")
    func reportsFitOneFrame() throws {
        let longPath = "/" + Array(repeating: String(repeating: "d", count: 250), count: 16).joined(separator: "/")
        let rows = (0..<AdminReports.maximumRows).map {
            AdminReports.CallBack(client: "client-\($0 % 7)", fid: "1.\($0).1", path: longPath, expiresAt: 1_800_000_000)
        }
        let json = AdminDesk.fit(rows, omitted: 5, AdminReports.CallBacks.init)
        #expect(json.count <= AdminDesk.reportLimit)
        let report = try AdminReports.decode(AdminReports.CallBacks.self, from: json)
        #expect(!report.callBacks.isEmpty && report.callBacks.count < rows.count)
        #expect(report.callBacks.count + report.omitted == rows.count + 5)
        #expect(report.callBacks.first == rows.first)

        let small = AdminDesk.fit(Array(rows.prefix(3)), omitted: 0, AdminReports.CallBacks.init)
        #expect(try AdminReports.decode(AdminReports.CallBacks.self, from: small).callBacks.count == 3)
    }

    @Test("a callbacks report past its row limit says exactly how many it left out, not one")
    func omittedIsCounted() throws {
        try withTemporaryStore { store in
            _ = try store.introduce(client: "a", epoch: 1)
            for i in 0..<10 {
                let file = try store.create(CreateRequest(directory: .root, name: "f\(i)", type: .regular, mode: 0o644, uid: 0, gid: 0),
                                            client: "a").value.target!
                _ = try store.fetchStatus(file.fid, client: .afs("a"))
            }
            // The root and the ten files.
            let report = try store.callBacks(under: "/", client: "", limit: 3)
            #expect(report.callBacks.count == 3)
            #expect(report.omitted == 8)
        }
    }
}
