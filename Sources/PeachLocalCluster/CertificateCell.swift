import Foundation
import PeachSecurity
import PeachSupport

/// A cell's certificates in a temporary directory, made by the same code as `peach cert`:
/// a CA, the server's certificate, client machines, and the bad certificates a test needs
/// (expired, signed by another CA, named in a revocation list).
public final class CertificateCell: @unchecked Sendable {
    public let directory: TemporaryDirectory
    public var path: String { directory.path + "/cell" }
    /// Another cell: its certificates are signed by a CA this cell's server does not trust.
    public var foreignPath: String { directory.path + "/foreign" }

    public init(clients: [String] = ["alpha", "beta"]) throws {
        directory = try TemporaryDirectory(prefix: "peach-cell")
        try CellCertificates.initialize(directory: path, hosts: [])
        for name in clients { try CellCertificates.issueClient(directory: path, name: name) }
        try CellCertificates.issueClient(directory: path, name: "expired", validFor: 86_400,
                                         notValidBefore: Date().addingTimeInterval(-10 * 86_400))
        try CellCertificates.initialize(directory: foreignPath, hosts: [])
        try CellCertificates.issueClient(directory: foreignPath, name: "intruder")
    }

    public func serverFiles() -> TLSFiles {
        TLSFiles(certificate: path + "/server.pem", key: path + "/server-key.pem", certificateAuthority: path + "/ca.pem")
    }

    /// A client machine's files; `foreign` takes them from the other cell (with this cell's CA to check the server).
    public func clientFiles(_ name: String, foreign: Bool = false) -> TLSFiles {
        let dir = foreign ? foreignPath : path
        return TLSFiles(certificate: dir + "/\(name).pem", key: dir + "/\(name)-key.pem", certificateAuthority: path + "/ca.pem")
    }

    public func serverTLS(revoked: Set<String> = []) throws -> ServerTLS {
        try ServerTLS(files: serverFiles(), revoked: revoked)
    }

    public func clientTLS(_ name: String, foreign: Bool = false) throws -> ClientTLS {
        try ClientTLS(files: clientFiles(name, foreign: foreign))
    }

    /// `peach mount` arguments for a client machine.
    public func mountArguments(_ name: String, foreign: Bool = false) -> [String] {
        let files = clientFiles(name, foreign: foreign)
        return ["--tls-cert", files.certificate, "--tls-key", files.key, "--tls-ca", files.certificateAuthority]
    }

    deinit { directory.remove() }
}
