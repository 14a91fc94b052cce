import NIOCore
import NIOPosix
import NIOSSL

/// One line for a TLS failure a client sees. In TLS 1.3 the server refuses a client certificate
/// after the client's handshake is done, so the refusal arrives as an alert on the first read;
/// the alert's name is matched in the error's text (its numeric code is not public API).
public enum TLSFailure {
    public static func describe(_ error: Error) -> String? {
        if let connection = error as? NIOConnectionError, let first = connection.connectionErrors.first {
            return describe(first.error)
        }
        if let extra = error as? NIOSSLExtraError, extra == .failedToValidateHostname {
            return "the server's certificate does not name the address connected to"
        }
        let text = String(describing: error)
        let alerts = [
            ("TLSV1_ALERT_CERTIFICATE_REQUIRED", "the server requires a client certificate (--tls-cert, --tls-key, --tls-ca)"),
            ("SSLV3_ALERT_CERTIFICATE_UNKNOWN", "the server refused this client's certificate (not signed by the cell's CA, expired or revoked)"),
            ("TLSV1_ALERT_UNKNOWN_CA", "the server refused this client's certificate: unknown CA"),
            ("SSLV3_ALERT_CERTIFICATE_EXPIRED", "the server refused this client's certificate: expired"),
            ("TLSV1_ALERT_PROTOCOL_VERSION", "the server requires TLS 1.3"),
            ("CERTIFICATE_VERIFY_FAILED", "the server's certificate did not verify against the CA given with --tls-ca: not signed by it, expired, or not a server certificate (peach cert makes server and client certificates apart)"),
            ("WRONG_VERSION_NUMBER", "the server does not speak TLS (is it running without --tls-cert?)"),
        ]
        for (token, message) in alerts where text.contains(token) { return message }
        if error is NIOSSLError || error is BoringSSLError { return "TLS handshake failed: \(text)" }
        return nil
    }
}
