import ArgumentParser
import PeachSecurity

/// `--tls-cert F --tls-key F --tls-ca F`, the same for `peach server` and `peach mount`.
struct TLSOptions: ParsableArguments {
    @Option(name: .customLong("tls-cert"), help: "This machine's certificate (PEM), from `peach cert`.")
    var certificate: String?

    @Option(name: .customLong("tls-key"), help: "Its private key (PEM).")
    var key: String?

    @Option(name: .customLong("tls-ca"), help: "The cell's CA certificate (PEM): the only one trusted.")
    var certificateAuthority: String?

    var isUsed: Bool { certificate != nil || key != nil || certificateAuthority != nil }

    func validate() throws {
        guard isUsed else { return }
        guard certificate != nil, key != nil, certificateAuthority != nil else {
            throw CommandFailure("TLS needs all three of --tls-cert, --tls-key and --tls-ca")
        }
    }

    var files: TLSFiles? {
        guard let certificate, let key, let certificateAuthority else { return nil }
        return TLSFiles(certificate: certificate, key: key, certificateAuthority: certificateAuthority)
    }
}
