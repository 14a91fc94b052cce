import ArgumentParser
import PeachSecurity

struct CertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cert",
        abstract: "Make the cell's certificates for mutual TLS (see docs/security.md).",
        subcommands: [Init.self, Server.self, Client.self]
    )

    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a cell CA and the server's certificate in DIR: ca.pem, ca-key.pem, server.pem, server-key.pem.",
            discussion: "Keys are written with mode 0600. Keep ca-key.pem off the servers and clients: it makes new client certificates."
        )

        @Argument(help: "Directory for the files; created if missing.")
        var directory: String

        @Option(name: .customLong("host"), help: "A name or IP address the server is reached by (repeatable); localhost, 127.0.0.1 and ::1 are always included.")
        var hosts: [String] = []

        func run() throws {
            do {
                try CellCertificates.initialize(directory: directory, hosts: hosts)
            } catch {
                throw CommandFailure("\(error)")
            }
            print("peach cert: wrote \(directory)/ca.pem, ca-key.pem, server.pem, server-key.pem")
        }
    }

    struct Server: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a new server.pem and server-key.pem signed by the CA in DIR (renewal, or new names); clients keep theirs."
        )

        @Argument(help: "The directory holding ca.pem and ca-key.pem.")
        var directory: String

        @Option(name: .customLong("host"), help: "A name or IP address the server is reached by (repeatable); localhost, 127.0.0.1 and ::1 are always included.")
        var hosts: [String] = []

        func run() throws {
            do {
                try CellCertificates.issueServer(directory: directory, hosts: hosts)
            } catch {
                throw CommandFailure("\(error)")
            }
            print("peach cert: wrote \(directory)/server.pem and server-key.pem; restart the server to use them")
        }
    }

    struct Client: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make NAME.pem and NAME-key.pem for a client machine, signed by the CA in DIR."
        )

        @Argument(help: "The directory holding ca.pem and ca-key.pem.")
        var directory: String

        @Argument(help: "The machine's name: what --revoked, --no-root-squash and the server's log call it.")
        var name: String

        @Option(help: "Days the certificate is valid.")
        var days = 730

        func run() throws {
            guard days > 0 else { throw CommandFailure("--days must be positive") }
            do {
                try CellCertificates.issueClient(directory: directory, name: name, validFor: Double(days) * 86_400)
            } catch {
                throw CommandFailure("\(error)")
            }
            print("peach cert: wrote \(directory)/\(name).pem and \(name)-key.pem")
        }
    }
}
