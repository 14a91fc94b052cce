import Foundation
import NIOSSL
import PeachTesting
import Testing
@testable import PeachSecurity

/// The certificates `peach cert` makes, and the server's check of a client machine's certificate.
@Suite("Cell certificates")
struct CellCertificateTests {
    @Test("cert init writes the CA and server files, keys readable by the owner only")
    func certificateFiles() throws {
        let cell = try TestCell()
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

    @Test("the server's check gives the reason for each refusal")
    func refusalReasons() async throws {
        let cell = try TestCell(clients: ["alpha", "revoked-one"])
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
