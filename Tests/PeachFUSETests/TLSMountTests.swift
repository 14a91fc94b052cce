import Foundation
import PeachServer
import PeachTesting
import Testing

/// `peach mount` with the cell's certificates, against a server that serves mutual TLS only.
@Suite("Real FUSE mounts: mutual TLS", .serialized,
       .enabled(if: MountSupport.unavailableReason == nil, "\(MountSupport.unavailableReason ?? "")"))
struct TLSMountTests {
    let peach = MountSupport.peachBinary

    @Test("two machines mount with their certificates; a write on one is read on the other")
    func mutualTLSMounts() throws {
        let cell = try TestCell()
        try withMounts(tls: try cell.serverTLS(), identityPolicy: IdentityPolicy(noRootSquash: ["alpha", "beta"])) { cluster in
            let a = try cluster.mount("a", extraArguments: cell.mountArguments("alpha"))
            let b = try cluster.mount("b", extraArguments: cell.mountArguments("beta"))
            try shell("echo secret > '\(a.path)/f'")
            #expect(try shell("cat '\(b.path)/f'").output == "secret\n")
        }
    }

    @Test("a mount with no, a foreign, an expired or a revoked certificate fails with one line and leaves nothing mounted")
    func refusedMounts() throws {
        let cell = try TestCell(clients: ["alpha", "revoked-one"])
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
}
