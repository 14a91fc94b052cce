import Foundation
import PeachLocalCluster
import PeachSupport
import PeachTesting
import Testing

/// Installing and mounting at boot (issue 10): `make install`'s files, `mount -t fuse.peach` and
/// an fstab line through the installed helper, `-o` spellings, and the systemd units' ExecStart.
@Suite("Real FUSE mounts: installing and mounting at boot", .serialized,
       .enabled(if: MountSupport.unavailableReason == nil && FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare"),
                "\(MountSupport.unavailableReason ?? "unshare is missing")"))
struct MountAtBootTests {
    let peach = "'\(MountSupport.peachBinary)'"

    @Test("make install-files places peach and mount.fuse.peach; mount -t fuse.peach and an fstab line then mount PeachFS")
    func mountThroughTheHelper() throws {
        try withMounts { cluster in
            let work = cluster.directory.path
            let install = try shell("make -s -C '\(MountSupport.packageRoot)' install-files BINARY='\(MountSupport.peachBinary)' "
                                    + "PREFIX='\(work)/usr' SBINDIR='\(work)/sbin'")
            #expect(install.status == 0, "\(install.output)")
            #expect(FileManager.default.isExecutableFile(atPath: work + "/usr/bin/peach"))
            #expect(try FileManager.default.destinationOfSymbolicLink(atPath: work + "/sbin/mount.fuse.peach") == work + "/usr/bin/peach")

            let viaType = try cluster.directory.subdirectory("via-type")
            let viaFstab = try cluster.directory.subdirectory("via-fstab")
            try "\(cluster.address) \(viaFstab) fuse.peach cache=\(work)/cache-fstab,mode=nfs,_netdev,nofail 0 0\n"
                .write(toFile: work + "/fstab", atomically: true, encoding: .utf8)
            // mount(8) runs helpers from /sbin only: in a mount namespace of its own, the installed
            // /sbin stands in for the system's. The fstab is the file LIBMOUNT_FSTAB names.
            let script = """
                set -e
                mount --bind '\(work)/sbin' /sbin
                trap "status=\\$?; set +e; for m in '\(viaType)' '\(viaFstab)'; do umount \\$m 2>/dev/null || umount -l \\$m 2>/dev/null; done; exit \\$status" EXIT
                mount -t fuse.peach \(cluster.address) '\(viaType)' -o cache='\(work)/cache-type',mode=afs
                echo one > '\(viaType)/written-via-type'
                LIBMOUNT_FSTAB='\(work)/fstab' mount '\(viaFstab)'
                grep -E ' (\(viaType)|\(viaFstab)) ' /proc/self/mounts
                cat '\(viaFstab)/written-via-type'
                echo two > '\(viaFstab)/written-via-fstab'
                umount '\(viaType)'
                umount '\(viaFstab)'
                echo unmounted
                """
            let run = try shell("unshare --mount --propagation private sh -c '\(script.replacingOccurrences(of: "'", with: "'\\''"))'")
            #expect(run.status == 0, "\(run.output)")
            #expect(run.output.contains("\(cluster.address) \(viaType) fuse.peach"))
            #expect(run.output.contains("\(cluster.address) \(viaFstab) fuse.peach"))
            #expect(run.output.contains("one\n"))
            #expect(run.output.hasSuffix("unmounted\n"))
            let b = try cluster.mount("b", design: .afs)
            #expect(Files.read(b.path + "/written-via-type") == "one\n")
            #expect(Files.read(b.path + "/written-via-fstab") == "two\n")
        }
    }

    @Test("every peach mount option has an -o spelling; ro and malformed options are refused with a reason")
    func everyOptionHasAnOSpelling() throws {
        let help = try shell("\(peach) mount --help").output
        let options = help.split(separator: "\n").compactMap { line -> (name: String, takesValue: Bool)? in
            let words = line.split(separator: " ")
            guard let first = words.first, first.hasPrefix("--"), first != "--help", first != "--version" else { return nil }
            return (String(first.dropFirst(2)), words.count > 1 && words[1].hasPrefix("<"))
        }
        #expect(options.count >= 20)
        #expect(options.contains { $0.name == "cache-size" && $0.takesValue })
        for option in options {
            let spelled = option.name.replacingOccurrences(of: "-", with: "_") + (option.takesValue ? "=1" : "")
            let result = try shell("\(peach) mount /nonexistent-peach-mount -o \(spelled)")
            #expect(result.status != 0)
            #expect(!result.output.contains("Unknown option"), "-o \(spelled): \(result.output)")
        }
        let generic = try shell("\(peach) mount /nonexistent-peach-mount -o rw,_netdev,nofail,x-systemd.automount,cache=/tmp/x")
        #expect(generic.output.contains("does not exist"), "\(generic.output)")
        let directory = try TemporaryDirectory(prefix: "peach-options")
        defer { directory.remove() }
        let cacheIsAFile = try shell("\(peach) mount '\(directory.path)' -o cache=/etc/passwd")
        #expect(cacheIsAFile.output.contains("cannot use /etc/passwd as the cache directory"), "\(cacheIsAFile.output)")
        // A cache directory uid 1000 may not create: the reason is the permission, not "not a directory".
        let userMountPoint = directory.path + "/user-mount"
        try FileManager.default.createDirectory(atPath: userMountPoint, withIntermediateDirectories: false)
        chown(userMountPoint, 1000, 1000)
        chmod(directory.path, 0o755)
        let denied = try shell("setpriv --reuid=1000 --regid=1000 --clear-groups \(peach) mount '\(userMountPoint)' -o cache=/root/peach-denied/cache")
        #expect(denied.status != 0)
        #expect(denied.output.contains("cannot create /root/peach-denied: Permission denied"), "\(denied.output)")
        // An unknown -o option is named as it was given.
        let bogus = try shell("\(peach) mount /nonexistent-peach-mount -o bogus_option=1,cache=/tmp/x")
        #expect(bogus.status != 0)
        #expect(bogus.output.contains("'-o bogus_option'") && !bogus.output.contains("--bogus-option"), "\(bogus.output)")
        let readOnly = try shell("\(peach) mount /nonexistent-peach-mount -o ro,cache=/tmp/x")
        #expect(readOnly.status == 32 && readOnly.output.contains("read-write"))
        #expect(try shell("\(peach) mount /nonexistent-peach-mount -o 'cache=/tmp/x,bad name'").output.contains("not an option name"))
        // A value given through -o and again elsewhere must agree, or the mount is refused.
        let twice = try shell("\(peach) mount /nonexistent-peach-mount --server 127.0.0.1:7001 -o cache=/tmp/x,server=127.0.0.1:7002")
        #expect(twice.status == 32 && twice.output.contains("--server 127.0.0.1:7001 and -o server=127.0.0.1:7002 disagree"), "\(twice.output)")
        #expect(try shell("\(peach) mount /nonexistent-peach-mount -o cache=/tmp/x -o cache=/tmp/y").output.contains("disagree"))
        let agreeing = try shell("\(peach) mount /nonexistent-peach-mount --server=127.0.0.1:7001 -o cache=/tmp/x,server=127.0.0.1:7001")
        #expect(agreeing.output.contains("does not exist"), "\(agreeing.output)")
        // As mount(8)'s helper: the fstab line's source and -o server= must agree.
        try FileManager.default.createSymbolicLink(atPath: directory.path + "/mount.fuse.peach", withDestinationPath: MountSupport.peachBinary)
        let helper = try shell("'\(directory.path)/mount.fuse.peach' 127.0.0.1:7001 /nonexistent-peach-mount -o cache=/tmp/x,server=127.0.0.1:7002")
        #expect(helper.status == 32 && helper.output.contains("disagree"), "\(helper.output)")
    }

    /// The ExecStart line of `contrib/systemd/NAME`, with the paths and addresses replaced.
    func execStart(_ unit: String, _ replacements: [String: String]) throws -> [String] {
        let text = try String(contentsOfFile: MountSupport.packageRoot + "/contrib/systemd/" + unit, encoding: .utf8)
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("ExecStart=") }) else {
            throw MountError(description: "\(unit) has no ExecStart")
        }
        var command = String(line.dropFirst("ExecStart=".count))
        command = command.replacingOccurrences(of: "/usr/local/bin/peach", with: MountSupport.peachBinary)
        for (old, new) in replacements { command = command.replacingOccurrences(of: old, with: new) }
        return command.split(separator: " ").map(String.init)
    }

    /// Waits until `log` matches `pattern`; returns the match.
    func waitFor(_ pattern: String, in log: String) -> String? {
        var match: String?
        _ = eventually(within: 10, every: 0.025) {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            match = text.range(of: pattern, options: .regularExpression).map { String(text[$0]) }
            return match != nil
        }
        return match
    }

    @Test("the systemd units' ExecStart lines serve and mount; SIGTERM unmounts after storing, and stops the server cleanly")
    func systemdUnits() throws {
        let directory = try TemporaryDirectory(prefix: "peach-units")
        defer { directory.remove() }
        let work = directory.path
        let serverLog = work + "/server.log"
        let serverFD = open(serverLog, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        defer { close(serverFD) }
        let server = try ChildProcess(try execStart("peach-server.service", [
            "/var/lib/peach": work + "/root", "127.0.0.1:7000": "127.0.0.1:0", "127.0.0.1:9700": "127.0.0.1:0",
        ]), outputFD: serverFD)
        defer {
            server.signal(SIGKILL)
            server.wait()
        }
        let serving = try #require(waitFor(#"on 127\.0\.0\.1:\d+"#, in: serverLog), "\((try? String(contentsOfFile: serverLog, encoding: .utf8)) ?? "")")
        let address = String(serving.dropFirst(3))
        #expect(waitFor(#"metrics at http://127\.0\.0\.1:\d+/metrics"#, in: serverLog) != nil)

        let mountPoint = try directory.subdirectory("mnt")
        let mountLog = work + "/mount.log"
        let mountFD = open(mountLog, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        defer { close(mountFD) }
        let mount = try ChildProcess(try execStart("peach-mount.service", [
            "/mnt/peach": mountPoint, "/var/cache/peach": work + "/cache", "127.0.0.1:7000": address,
        ]), outputFD: mountFD)
        defer {
            if MountedCluster.isMounted(mountPoint) { _ = try? shell("fusermount3 -uz '\(mountPoint)'") }
            mount.signal(SIGKILL)
            mount.wait()
        }
        #expect(waitFor("mounted", in: mountLog) != nil, "\((try? String(contentsOfFile: mountLog, encoding: .utf8)) ?? "")")
        #expect(MountedCluster.isMounted(mountPoint))
        // Stored at its close; SIGTERM then unmounts and ends the cache manager with status 0.
        try shell("echo stored > '\(mountPoint)/f'")
        mount.signal(SIGTERM)
        #expect(mount.wait() == 0)
        #expect(!MountedCluster.isMounted(mountPoint))
        let stats = try shell("\(peach) admin stats --json --server \(address)").output
        #expect(stats.contains("\"volumeBytes\":7"), "\(stats)")

        server.signal(SIGTERM)
        #expect(server.wait() == 0)
        #expect(((try? String(contentsOfFile: serverLog, encoding: .utf8)) ?? "").contains("stopping on signal 15"))
    }
}
