import Foundation
import NIOSSL
import PeachLocalCluster
import PeachTesting
import Testing
@testable import PeachSecurity

/// The certificates `peach cert` makes, and the server's check of a client machine's certificate.
@Suite("Cell certificates")
struct CellCertificateTests {
    @Test("cert init writes the CA and server files, keys readable by the owner only")
    func certificateFiles() throws {
        let cell = try CertificateCell()
        for name in ["ca", "server", "alpha"] {
            var info = stat()
            #expect(stat(cell.path + "/\(name)-key.pem", &info) == 0)
            #expect(info.st_mode & 0o777 == 0o600, "\(name)-key.pem is readable by others")
            #expect(FileManager.default.fileExists(atPath: cell.path + "/\(name).pem"))
        }
        #expect(throws: CellCertificates.Failure.self) { try CellCertificates.initialize(directory: cell.path, hosts: []) }
        #expect(throws: CellCertificates.Failure.self) { try CellCertificates.issueClient(directory: cell.path, name: "../x") }
        #expect(throws: CellCertificates.Failure.self) { try CellCertificates.initialize(directory: cell.path + "-2", hosts: ["bad host"]) }
    }

    @Test("cert server renews the server certificate under the same CA; clients' certificates still check")
    func serverRenewal() async throws {
        let cell = try CertificateCell(clients: ["alpha"])
        let before = try String(contentsOfFile: cell.path + "/server.pem", encoding: .utf8)
        try CellCertificates.issueServer(directory: cell.path, hosts: ["fs.example.org", "192.0.2.10"])
        let after = try String(contentsOfFile: cell.path + "/server.pem", encoding: .utf8)
        #expect(before != after)
        var info = stat()
        #expect(stat(cell.path + "/server-key.pem", &info) == 0 && info.st_mode & 0o777 == 0o600)
        let tls = try cell.serverTLS()
        let chain = try NIOSSLCertificate.fromPEMFile(cell.clientFiles("alpha").certificate)
        guard case .accepted = await ClientCertificateCheck.check(chain, authority: tls.authority, revoked: []) else {
            Issue.record("alpha refused after the server's renewal"); return
        }
        #expect(throws: CellCertificates.Failure.self) { try CellCertificates.issueServer(directory: cell.path + "/none", hosts: []) }
    }

    @Test("the server's check gives the reason for each refusal")
    func refusalReasons() async throws {
        let cell = try CertificateCell(clients: ["alpha", "revoked-one"])
        let tls = try cell.serverTLS(revoked: ["revoked-one"])
        func reason(_ files: TLSFiles) async throws -> String {
            let chain = try NIOSSLCertificate.fromPEMFile(files.certificate)
            switch await ClientCertificateCheck.check(chain, authority: tls.authority, revoked: tls.revoked) {
            case .accepted(let name, _): return "accepted \(name)"
            case .refused(let subject, let why): return "\(subject): \(why)"
            }
        }
        #expect(try await reason(cell.clientFiles("alpha")) == "accepted alpha")
        #expect(try await reason(cell.clientFiles("revoked-one")).contains("revoked"))
        #expect(try await reason(cell.clientFiles("expired")).contains("expired"))
        #expect(try await reason(cell.clientFiles("intruder", foreign: true)).contains("not signed by this cell's CA"))
        #expect(try await reason(cell.serverFiles()).contains("not a client certificate"))
    }
}
