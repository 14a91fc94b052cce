import Foundation
import PeachLocalCluster
import PeachServer
import PeachSupport
import PeachTesting
import Testing

/// `peach mount` with the cell's certificates, against a server that serves mutual TLS only.
@Suite("Real FUSE mounts: mutual TLS", .serialized,
       .enabled(if: MountSupport.unavailableReason == nil, "\(MountSupport.unavailableReason ?? "")"))
struct TLSMountTests {
    let peach = MountSupport.peachBinary

    @Test("two machines mount with their certificates; a write on one is read on the other")
    func mutualTLSMounts() throws {
        let cell = try CertificateCell()
        try withMounts(tls: try cell.serverTLS(), identityPolicy: IdentityPolicy(noRootSquash: ["alpha", "beta"])) { cluster in
            let a = try cluster.mount("a", extraArguments: cell.mountArguments("alpha"))
            let b = try cluster.mount("b", extraArguments: cell.mountArguments("beta"))
            try shell("echo secret > '\(a.path)/f'")
            #expect(try shell("cat '\(b.path)/f'").output == "secret\n")
        }
    }

    @Test("a mount with no, a foreign, an expired or a revoked certificate fails with one line and leaves nothing mounted")
    func refusedMounts() throws {
        let cell = try CertificateCell(clients: ["alpha", "revoked-one"])
        try withMounts(tls: try cell.serverTLS(revoked: ["revoked-one"])) { cluster in
            let cases: [(String, [String], String)] = [
                ("none", [], "may require TLS"),
                ("foreign", cell.mountArguments("intruder", foreign: true), "refused this client's certificate"),
                ("expired", cell.mountArguments("expired"), "expired"),
                ("revoked", cell.mountArguments("revoked-one"), "refused this client's certificate"),
                ("missing", ["--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.pem", "--tls-ca", cell.path + "/ca.pem"],
                 "cannot read the certificate"),
            ]
            for (name, arguments, expected) in cases {
                let target = try cluster.directory.subdirectory("refused-\(name)")
                let cache = cluster.directory.path + "/cache-refused-\(name)"
                let result = try shell("\(peach) mount '\(target)' --server \(cluster.address) --cache '\(cache)' "
                                       + arguments.map { "'\($0)'" }.joined(separator: " "))
                #expect(result.status != 0, "\(name): mounted")
                let lines = result.output.split(separator: "\n")
                #expect(lines.count == 1, "\(name): \(result.output)")
                #expect(result.output.contains(expected), "\(name): \(result.output)")
                #expect(!MountedCluster.isMounted(target))
            }
        }
    }

    @Test("peach server refuses plain TCP on an address other than loopback unless told --insecure")
    func plainTCPOnlyOnLoopback() throws {
        let directory = try TemporaryDirectory(prefix: "peach-insecure")
        defer { directory.remove() }
        let result = try shell("'\(peach)' server --root '\(directory.path)/root' --listen 0.0.0.0:0")
        #expect(result.status != 0)
        #expect(result.output.split(separator: "\n").count == 1, "\(result.output)")
        #expect(result.output.contains("--insecure"))
        let revoked = try shell("'\(peach)' server --root '\(directory.path)/root' --revoked /dev/null")
        #expect(revoked.status != 0 && revoked.output.contains("--revoked needs TLS"))
    }

    @Test("first use over TLS: a volume made with --root-owner 1000:1000 lets uid 1000 write at once; a restart that asks for another owner is refused")
    func newVolumeWritableByItsOwner() throws {
        let cell = try CertificateCell()
        let server = cell.serverFiles()
        let tlsArguments = ["--tls-cert", server.certificate, "--tls-key", server.key, "--tls-ca", server.certificateAuthority]
        try withMounts(serverArguments: tlsArguments + ["--root-owner", "1000:1000"]) { cluster in
            let a = try cluster.mount("a", extraArguments: cell.mountArguments("alpha") + ["--allow-other"])
            // uid 1000 reaches the mount by its path.
            try shell("chmod 711 \"$(dirname '\(a.path)')\"")
            let work = try shell("setpriv --reuid=1000 --regid=1000 --clear-groups sh -c "
                                 + "'mkdir \(a.path)/home && echo mine > \(a.path)/home/f && cat \(a.path)/home/f'")
            #expect(work.status == 0 && work.output == "mine\n", "\(work.output)")
            #expect(try shell("stat -c '%u:%g %a' '\(a.path)'").output == "1000:1000 755\n")
            // Root on the client is squashed: it may not write in uid 1000's root directory.
            #expect(try shell("touch '\(a.path)/by-root'").status != 0)

            cluster.stopServer()
            let again = try shell("'\(peach)' server --root '\(cluster.serverRoot)' --listen 127.0.0.1:0 --root-owner 0:0 "
                                  + tlsArguments.map { "'\($0)'" }.joined(separator: " "))
            #expect(again.status != 0)
            #expect(again.output.contains("--root-owner and --root-mode apply when a volume is made"), "\(again.output)")
            try cluster.startServer()
        }
    }
}
