import Foundation
import NIOSSL
import X509

/// The files a server or a client machine presents: its certificate, its key, and the cell CA
/// it trusts (`--tls-cert F --tls-key F --tls-ca F`).
public struct TLSFiles: Sendable {
    public var certificate: String
    public var key: String
    public var certificateAuthority: String

    public init(certificate: String, key: String, certificateAuthority: String) {
        self.certificate = certificate
        self.key = key
        self.certificateAuthority = certificateAuthority
    }

    func load() throws -> (chain: [NIOSSLCertificate], key: NIOSSLPrivateKey, ca: [NIOSSLCertificate]) {
        func read<T>(_ path: String, _ what: String, _ parse: (String) throws -> T) throws -> T {
            guard FileManager.default.isReadableFile(atPath: path) else {
                throw CellCertificates.Failure("cannot read the \(what) \(path)")
            }
            do { return try parse(path) } catch { throw CellCertificates.Failure("\(path) is not a PEM \(what)") }
        }
        let chain = try read(certificate, "certificate") { try NIOSSLCertificate.fromPEMFile($0) }
        let key = try read(key, "private key") { try NIOSSLPrivateKey(file: $0, format: .pem) }
        let ca = try read(certificateAuthority, "CA certificate") { try NIOSSLCertificate.fromPEMFile($0) }
        guard !chain.isEmpty, !ca.isEmpty else { throw CellCertificates.Failure("\(certificate) or \(certificateAuthority) holds no certificate") }
        return (chain, key, ca)
    }
}

/// A server's TLS: mutual TLS 1.3, client certificates checked against the cell CA only,
/// and the names in `revoked` refused.
public struct ServerTLS: Sendable {
    public let context: NIOSSLContext
    let authority: Certificate
    public let revoked: Set<String>

    public init(files: TLSFiles, revoked: Set<String> = []) throws {
        let (chain, key, ca) = try files.load()
        var configuration = TLSConfiguration.makeServerConfigurationWithMTLS(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key), trustRoots: .certificates(ca))
        configuration.minimumTLSVersion = .tlsv13
        // The client's certificate names a machine, not the address it connects from.
        configuration.certificateVerification = .noHostnameVerification
        context = try NIOSSLContext(configuration: configuration)
        authority = try Certificate(derEncoded: ca[0].toDERBytes())
        self.revoked = revoked
    }

    /// Reads `--revoked FILE`: one client name per line; blank lines and `#` comments ignored.
    public static func revokedNames(file: String) throws -> Set<String> {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw CellCertificates.Failure("cannot read the revocation list \(file)")
        }
        return Set(text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") })
    }
}

/// A client machine's TLS: its certificate, and the server verified against the cell CA.
public struct ClientTLS: Sendable {
    public let context: NIOSSLContext
    /// The machine name in the client's certificate, for messages.
    public let name: String
    /// When the certificate stops being valid: checked before connecting, for a clear message.
    let notValidAfter: Date
    let notValidBefore: Date

    public init(files: TLSFiles) throws {
        let (chain, key, ca) = try files.load()
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv13
        configuration.trustRoots = .certificates(ca)
        configuration.certificateVerification = .fullVerification
        configuration.certificateChain = chain.map { .certificate($0) }
        configuration.privateKey = .privateKey(key)
        context = try NIOSSLContext(configuration: configuration)
        let leaf = try Certificate(derEncoded: chain[0].toDERBytes())
        name = leaf.subject.commonName ?? "?"
        notValidAfter = leaf.notValidAfter
        notValidBefore = leaf.notValidBefore
    }

    /// Why this certificate cannot be used now, if it cannot: the server would refuse it
    /// without saying why.
    public func problem(now: Date = Date()) -> String? {
        if now > notValidAfter { return "the client certificate '\(name)' expired on \(notValidAfter)" }
        if now < notValidBefore { return "the client certificate '\(name)' is not valid before \(notValidBefore)" }
        return nil
    }

    /// The name to verify the server's certificate against: a host name, or nil for an IP
    /// address (then the certificate's IP addresses are matched against the connected one).
    public static func serverName(for host: String) -> String? {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1 ? nil : host
    }
}
