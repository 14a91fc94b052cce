import Foundation
import Logging
import NIOConcurrencyHelpers
import PeachClient
import PeachLocalCluster
import PeachProtocol
import PeachSecurity
import PeachSupport
import PeachTesting
import Testing
@testable import PeachServer

/// Mutual TLS between in-process cache managers and a real server on loopback: the right
/// certificate is served, every wrong one is refused with a reason, and a client without TLS
/// gets no file service at all.
@Suite("Mutual TLS")
struct TLSTests {
    @Test("two client machines with the cell's certificates share files and callback breaks over TLS", arguments: ClientDesign.allCases)
    func servedOverTLS(design: ClientDesign) throws {
        let cell = try CertificateCell()
        try withCluster(tls: try cell.serverTLS(), identityPolicy: IdentityPolicy(noRootSquash: ["alpha", "beta"])) { cluster in
            let alpha = PathClient(try cluster.addClient(tls: try cell.clientTLS("alpha")))
            let betaManager: CacheManager = design == .afs ? try cluster.addClient(tls: try cell.clientTLS("beta"))
                : try cluster.addNFSClient(tls: try cell.clientTLS("beta"))
            let beta = PathClient(betaManager)
            try alpha.writeFile("/shared", "one")
            #expect(try beta.readText("/shared") == "one")
            try alpha.writeFile("/shared", "two")
            #expect(try beta.readText("/shared") == "two")
        }
    }

    @Test("a wrongly signed, expired or revoked certificate, or none, gets no file service and a clear reason")
    func refusals() throws {
        let cell = try CertificateCell(clients: ["alpha", "revoked-one"])
        try withCluster(tls: try cell.serverTLS(revoked: ["revoked-one"])) { cluster in
            func failure(_ tls: ClientTLS?) -> String? {
                do {
                    // A cache directory of its own: a client whose start failed still holds its lock.
                    let client = try cluster.addClient(named: UUID().uuidString, tls: tls)
                    _ = try PathClient(client).list("/")
                    return nil
                } catch {
                    return "\(error)"
                }
            }
            let foreign = failure(try cell.clientTLS("intruder", foreign: true))
            #expect(foreign?.contains("refused this client's certificate") == true, "\(foreign ?? "accepted")")
            let revoked = failure(try cell.clientTLS("revoked-one"))
            #expect(revoked?.contains("refused this client's certificate") == true, "\(revoked ?? "accepted")")
            let expired = failure(try cell.clientTLS("expired"))
            print("TLS refusals seen by clients: foreign: \(foreign ?? "-"); revoked: \(revoked ?? "-"); expired: \(expired ?? "-")")
            #expect(expired?.contains("expired") == true, "\(expired ?? "accepted")")
            let plain = failure(nil)
            #expect(plain != nil, "a client without TLS was served")
            // The raw protocol without TLS: no reply, the connection closes.
            let raw = try RawProtocolClient(port: cluster.address.port)
            let hello = try raw.send(.hello(Hello(clientID: "raw", epoch: 1)))
            // What comes back is a TLS alert, not a frame, then the connection closes.
            let reply = try? raw.reply(to: hello, timeout: 5)
            #expect(reply == nil)
            // And the right certificate still works.
            let rightCertificate = failure(try cell.clientTLS("alpha"))
            #expect(rightCertificate == nil, "\(rightCertificate ?? "")")
        }
    }

    @Test("a machine's root is squashed unless listed in --no-root-squash; a read-only machine changes nothing")
    func rootSquashAndReadOnly() throws {
        let cell = try CertificateCell(clients: ["alpha", "beta", "kiosk"])
        let policy = IdentityPolicy(noRootSquash: ["alpha"], readOnlyClients: ["kiosk"])
        try withCluster(tls: try cell.serverTLS(), identityPolicy: policy) { cluster in
            let alpha = PathClient(try cluster.addClient(tls: try cell.clientTLS("alpha")))
            let beta = PathClient(try cluster.addClient(tls: try cell.clientTLS("beta")))
            let kiosk = PathClient(try cluster.addClient(tls: try cell.clientTLS("kiosk")))
            try alpha.writeFile("/notes", "root's notes")
            #expect(try beta.readText("/notes") == "root's notes")
            #expect(throws: FileSystemError.self) { try beta.writeFile("/squashed", "x") }
            #expect(throws: FileSystemError.self) { try beta.writeFile("/notes", "overwritten") }
            #expect(try kiosk.readText("/notes") == "root's notes")
            do {
                try kiosk.writeFile("/notes", "kiosk")
                Issue.record("a read-only machine stored a file")
            } catch let error as FileSystemError {
                #expect(error.errno == EROFS)
            }
            #expect(try alpha.readText("/notes") == "root's notes")
        }
    }

    @Test("the server logs each refusal with the peer's address, the certificate's subject and the reason")
    func refusalsAreLogged() throws {
        let cell = try CertificateCell(clients: ["alpha", "revoked-one"])
        let directory = try TemporaryDirectory(prefix: "peach-tls-log")
        defer { directory.remove() }
        let records = CapturedLog()
        let logger = Logger(label: "test") { _ in records }
        let server = FileServer(store: try VolumeStore(root: directory.path + "/server"), tls: try cell.serverTLS(revoked: ["revoked-one"]),
                                logger: logger)
        defer { server.stop() }
        let port = try server.start(host: "127.0.0.1", port: 0)
        for (name, foreign) in [("intruder", true), ("revoked-one", false)] {
            let client = try AFSCacheManager(server: ServerAddress(host: "127.0.0.1", port: port),
                                             cacheDirectory: try directory.subdirectory("cache-\(name)"), cacheSize: 1 << 20,
                                             tls: try cell.clientTLS(name, foreign: foreign))
            #expect(throws: (any Error).self) { try client.start() }
        }
        let refusals = records.messages.filter { $0.message == "refused client certificate" }
        #expect(refusals.count == 2, "\(records.messages)")
        #expect(refusals.contains { $0.metadata["subject"] == "intruder" && $0.metadata["reason"]?.contains("CA") == true })
        #expect(refusals.contains { $0.metadata["subject"] == "revoked-one" && $0.metadata["reason"]?.contains("revoked") == true })
        #expect(refusals.allSatisfy { $0.metadata["peer"]?.contains("127.0.0.1") == true })
    }
}

/// A log handler that keeps what it is given, for tests of what the server logs.
final class CapturedLog: LogHandler, @unchecked Sendable {
    struct Record {
        var message: String
        var metadata: [String: String]
    }

    private let lock = NIOLock()
    private var records: [Record] = []
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let values = (event.metadata ?? [:]).mapValues { "\($0)" }
        lock.withLock { records.append(Record(message: "\(event.message)", metadata: values)) }
    }

    var messages: [Record] { lock.withLock { records } }
}
