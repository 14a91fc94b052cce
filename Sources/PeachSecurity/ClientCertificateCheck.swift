import Foundation
import NIOCore
import NIOSSL
import SwiftASN1
import X509

/// The server's check of a client machine's certificate, in place of BoringSSL's: the chain to
/// the cell CA (signatures, validity dates, constraints), the clientAuth usage, and the
/// revocation list. It knows why it refuses, so the server can log the reason.
enum ClientCertificateCheck {
    enum Outcome {
        case accepted(name: String, chain: [NIOSSLCertificate])
        case refused(subject: String, reason: String)
    }

    static func check(_ presented: [NIOSSLCertificate], authority: Certificate, revoked: Set<String>) async -> Outcome {
        let certificates: [Certificate]
        do {
            certificates = try presented.map { try Certificate(derEncoded: $0.toDERBytes()) }
        } catch {
            return .refused(subject: "-", reason: "unreadable certificate")
        }
        guard let leaf = certificates.first else { return .refused(subject: "-", reason: "no certificate") }
        let subject = leaf.subject.commonName ?? "\(leaf.subject)"
        if leaf.notValidAfter < Date() { return .refused(subject: subject, reason: "expired on \(leaf.notValidAfter)") }
        if leaf.notValidBefore > Date() { return .refused(subject: subject, reason: "not valid before \(leaf.notValidBefore)") }
        var verifier = Verifier(rootCertificates: CertificateStore([authority])) {
            RFC5280Policy()
            ClientMachinePolicy(revoked: revoked)
        }
        switch await verifier.validate(leaf: leaf, intermediates: CertificateStore(certificates.dropFirst())) {
        case .validCertificate(let chain):
            do {
                let nio = try chain.map { certificate -> NIOSSLCertificate in
                    var serializer = DER.Serializer()
                    try serializer.serialize(certificate)
                    return try NIOSSLCertificate(bytes: serializer.serializedBytes, format: .der)
                }
                return .accepted(name: subject, chain: nio)
            } catch {
                return .refused(subject: subject, reason: "unreadable chain")
            }
        case .couldNotValidate(let failures):
            let reasons = failures.map { "\($0.policyFailureReason)" }
            if reasons.isEmpty { return .refused(subject: subject, reason: "not signed by this cell's CA") }
            if let revokedReason = reasons.first(where: { $0.contains(ClientMachinePolicy.revokedMarker) }) {
                return .refused(subject: subject, reason: revokedReason)
            }
            if let usage = reasons.first(where: { $0.contains(ClientMachinePolicy.usageMarker) }) {
                return .refused(subject: subject, reason: usage)
            }
            return .refused(subject: subject, reason: "not signed by this cell's CA or invalid")
        }
    }
}

/// Client machines' certificates: clientAuth usage, and a name not on the revocation list.
/// (RFC5280Policy does not check extended key usage.)
struct ClientMachinePolicy: VerifierPolicy {
    static let revokedMarker = "revoked by --revoked"
    static let usageMarker = "not a client certificate"
    let verifyingCriticalExtensions: [ASN1ObjectIdentifier] = []
    let revoked: Set<String>

    func chainMeetsPolicyRequirements(chain: UnverifiedCertificateChain) -> PolicyEvaluationResult {
        let leaf = chain.leaf
        guard let usage = try? leaf.extensions.extendedKeyUsage, usage.contains(.clientAuth) else {
            return .failsToMeetPolicy(reason: Self.usageMarker + " (no clientAuth usage)")
        }
        if let name = leaf.subject.commonName, revoked.contains(name) {
            return .failsToMeetPolicy(reason: "\(name) is " + Self.revokedMarker)
        }
        return .meetsPolicy
    }
}

extension ServerTLS {
    /// The TLS handler for one incoming connection. `refused` is called with the subject and the
    /// reason when the client's certificate is refused (a missing certificate is refused by
    /// BoringSSL before this check: the server sees that as a handshake error).
    public func makeHandler(refused: @escaping @Sendable (_ subject: String, _ reason: String) -> Void) -> NIOSSLServerHandler {
        let authority = self.authority
        let revoked = self.revoked
        return NIOSSLServerHandler(context: context, customVerificationCallbackWithMetadata: { presented, promise in
            Task(executorPreference: VerificationExecutor.shared) {
                switch await ClientCertificateCheck.check(presented, authority: authority, revoked: revoked) {
                case .accepted(_, let chain):
                    promise.succeed(.certificateVerified(VerificationMetadata(NIOSSL.ValidatedCertificateChain(chain))))
                case .refused(let subject, let reason):
                    refused(subject, reason)
                    promise.succeed(.failed)
                }
            }
        })
    }
}
