import Crypto
import Foundation
import SwiftASN1
import X509

/// A cell's certificates, made with swift-certificates and swift-crypto (no openssl): a CA,
/// the server's certificate, and one certificate per client machine, all P-256 keys.
///
///     DIR/ca.pem  DIR/ca-key.pem (0600)  DIR/server.pem  DIR/server-key.pem (0600)  DIR/NAME.pem  DIR/NAME-key.pem (0600)
public enum CellCertificates {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        init(_ description: String) { self.description = description }
    }

    static let organization = "PeachFS cell"

    /// `peach cert init DIR`: a new CA (10 years) and a server certificate (2 years) valid for
    /// localhost, 127.0.0.1, ::1 and every name or address in `hosts`. Refuses to overwrite a CA.
    public static func initialize(directory: String, hosts: [String]) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        guard !FileManager.default.fileExists(atPath: directory + "/ca-key.pem") else {
            throw Failure("\(directory)/ca-key.pem exists already; remove it to make a new cell CA")
        }
        let caKey = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let caName = try DistinguishedName {
            OrganizationName(organization)
            CommonName("PeachFS cell CA")
        }
        let now = Date()
        let ca = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: caKey.publicKey,
            notValidBefore: now.addingTimeInterval(-300), notValidAfter: now.addingTimeInterval(10 * 365.25 * 86_400),
            issuer: caName, subject: caName, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: caKey.publicKey)
            },
            issuerPrivateKey: caKey)
        try write(ca, key: caKey, directory: directory, name: "ca")
        try issueServer(ca: ca, caKey: caKey, directory: directory, hosts: hosts)
    }

    /// `peach cert server DIR`: a new server certificate (2 years) signed by DIR's CA, replacing
    /// server.pem and server-key.pem: to renew it, or to add a name, without a new cell.
    public static func issueServer(directory: String, hosts: [String]) throws {
        let (ca, caKey) = try loadAuthority(directory)
        try issueServer(ca: ca, caKey: caKey, directory: directory, hosts: hosts)
    }

    private static func issueServer(ca: Certificate, caKey: Certificate.PrivateKey, directory: String, hosts: [String]) throws {
        let names = try subjectAlternativeNames(["localhost", "127.0.0.1", "::1"] + hosts)
        let (server, serverKey) = try issue(commonName: "peach-server", usage: .serverAuth, names: names, ca: ca, caKey: caKey,
                                            notValidAfter: Date().addingTimeInterval(2 * 365.25 * 86_400))
        try write(server, key: serverKey, directory: directory, name: "server")
    }

    /// The cell's CA certificate and key, from DIR.
    static func loadAuthority(_ directory: String) throws -> (Certificate, Certificate.PrivateKey) {
        let caPEM: String
        let caKeyPEM: String
        do {
            caPEM = try String(contentsOfFile: directory + "/ca.pem", encoding: .utf8)
            caKeyPEM = try String(contentsOfFile: directory + "/ca-key.pem", encoding: .utf8)
        } catch {
            throw Failure("no cell CA in \(directory) (ca.pem and ca-key.pem); run peach cert init \(directory) first")
        }
        do {
            return (try Certificate(pemEncoded: caPEM), try Certificate.PrivateKey(pemEncoded: caKeyPEM))
        } catch {
            throw Failure("\(directory)/ca.pem or ca-key.pem is not a PEM certificate and key")
        }
    }

    /// `peach cert client DIR NAME`: a client machine's certificate, signed by DIR's CA. NAME is
    /// what the server's `--revoked`, `--no-root-squash` and logs call this machine.
    public static func issueClient(directory: String, name: String, validFor seconds: TimeInterval = 2 * 365.25 * 86_400,
                                   notValidBefore: Date = Date().addingTimeInterval(-300)) throws {
        guard isValidClientName(name) else {
            throw Failure("client name '\(name)' must be 1-64 letters, digits, '.', '-' or '_'")
        }
        guard name != "ca", name != "server" else { throw Failure("'\(name)' is the name of the cell's own files") }
        let (ca, caKey) = try loadAuthority(directory)
        let (certificate, key) = try issue(commonName: name, usage: .clientAuth, names: nil, ca: ca, caKey: caKey,
                                           notValidBefore: notValidBefore,
                                           notValidAfter: notValidBefore.addingTimeInterval(seconds))
        try write(certificate, key: key, directory: directory, name: name)
    }

    public static func isValidClientName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 64
            && name.unicodeScalars.allSatisfy { ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) || "._-".unicodeScalars.contains($0) }
    }

    static func issue(commonName: String, usage: ExtendedKeyUsage.Usage, names: [GeneralName]?, ca: Certificate,
                      caKey: Certificate.PrivateKey, notValidBefore: Date = Date().addingTimeInterval(-300),
                      notValidAfter: Date) throws -> (Certificate, Certificate.PrivateKey) {
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let subject = try DistinguishedName {
            OrganizationName(organization)
            CommonName(commonName)
        }
        let authorityKey = try ca.extensions.subjectKeyIdentifier?.keyIdentifier
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: key.publicKey,
            notValidBefore: notValidBefore, notValidAfter: notValidAfter,
            issuer: ca.subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([usage])
                if let names { SubjectAlternativeNames(names) }
                SubjectKeyIdentifier(hash: key.publicKey)
                AuthorityKeyIdentifier(keyIdentifier: authorityKey)
            },
            issuerPrivateKey: caKey)
        return (certificate, key)
    }

    /// Host names become DNS names, IPv4 and IPv6 literals IP addresses.
    static func subjectAlternativeNames(_ hosts: [String]) throws -> [GeneralName] {
        var seen = Set<String>()
        return try hosts.filter { seen.insert($0.lowercased()).inserted }.map { host in
            var v4 = in_addr()
            var v6 = in6_addr()
            if inet_pton(AF_INET, host, &v4) == 1 {
                return .ipAddress(ASN1OctetString(contentBytes: ArraySlice(withUnsafeBytes(of: &v4) { Array($0) })))
            }
            if inet_pton(AF_INET6, host, &v6) == 1 {
                return .ipAddress(ASN1OctetString(contentBytes: ArraySlice(withUnsafeBytes(of: &v6) { Array($0) })))
            }
            guard !host.isEmpty, host.utf8.count <= 253,
                  host.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "." || $0 == "-") })
            else { throw Failure("--host '\(host)' is neither a host name nor an IP address") }
            return .dnsName(host)
        }
    }

    static func write(_ certificate: Certificate, key: Certificate.PrivateKey, directory: String, name: String) throws {
        try writeFile(directory + "/\(name)-key.pem", key.serializeAsPEM().pemString + "\n", mode: 0o600)
        try writeFile(directory + "/\(name).pem", certificate.serializeAsPEM().pemString + "\n", mode: 0o644)
    }

    /// Created with its final mode, so a key is never readable by others, even for a moment.
    static func writeFile(_ path: String, _ contents: String, mode: mode_t) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw Failure("cannot write \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard fchmod(fd, mode) == 0 else { throw Failure("cannot chmod \(path): \(String(cString: strerror(errno)))") }
        let bytes = Array(contents.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { throw Failure("cannot write \(path): \(String(cString: strerror(errno)))") }
            offset += n
        }
    }
}

extension DistinguishedName {
    /// The most specific common name, as BoringSSL reads it.
    public var commonName: String? {
        var result: String?
        for rdn in self {
            for attribute in rdn where attribute.type == .RDNAttributeType.commonName {
                result = String(describing: attribute.value)
            }
        }
        return result
    }
}
