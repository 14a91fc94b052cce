/// `-o` spellings of `peach mount`'s options, and the mount(8) helper `mount.fuse.peach`.
///
/// Every option `--some-name VALUE` is also `-o some_name=VALUE` (or `some-name=VALUE`), and every
/// flag `--some-flag` also `-o some_flag`, as fstab and `mount -t fuse.peach` need. Options that
/// mount(8) and systemd keep for themselves (`_netdev`, `nofail`, `x-systemd.*`, ...) are dropped.
enum MountOptions {
    struct Refused: Error, CustomStringConvertible {
        var description: String
    }

    /// mount(8)'s own options: meaningless to the cache manager, dropped without a word.
    static let generic: Set<String> = [
        "rw", "defaults", "auto", "noauto", "user", "users", "nouser", "owner", "group", "_netdev", "nofail",
        "suid", "nosuid", "dev", "nodev", "exec", "noexec", "async", "atime", "noatime", "relatime", "norelatime",
        "strictatime", "nodiratime", "diratime", "lazytime", "nolazytime", "loud", "silent",
    ]

    /// `peach mount`'s arguments for one `-o` list.
    static func expand(_ list: String) throws -> [String] {
        var arguments: [String] = []
        for option in list.split(separator: ",").map(String.init) {
            let key = option.split(separator: "=", maxSplits: 1).first.map(String.init) ?? option
            if generic.contains(key) || key.hasPrefix("x-") || key == "comment" { continue }
            if key == "ro" { throw Refused(description: "-o ro: PeachFS mounts are read-write (a read-only client is the server's --read-only-clients)") }
            guard !key.isEmpty, key.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }) else {
                throw Refused(description: "-o \(option): not an option name")
            }
            arguments.append("--" + key.replacingOccurrences(of: "_", with: "-"))
            if let equals = option.firstIndex(of: "=") { arguments.append(String(option[option.index(after: equals)...])) }
        }
        return arguments
    }

    /// `peach mount ... -o LIST ...` with each `-o LIST` (or `-oLIST`) spelled out.
    static func spellOut(_ arguments: [String]) throws -> [String] {
        var result: [String] = []
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            if argument == "-o" {
                guard index + 1 < arguments.count else { throw Refused(description: "-o needs a list of options") }
                result += try expand(arguments[index + 1])
                index += 2
                continue
            }
            if argument.hasPrefix("-o") && argument.count > 2 {
                result += try expand(String(argument.dropFirst(2)))
            } else {
                result.append(argument)
            }
            index += 1
        }
        return result
    }

    /// mount(8) runs `mount.fuse.peach SOURCE MOUNTPOINT [-o LIST] [-n] [-s] [-f] [-v]`: the
    /// arguments of the same `peach mount`, or nil for `-f` (a fake mount: nothing to do).
    static func helperArguments(_ arguments: [String]) throws -> [String]? {
        var positional: [String] = []
        var options: [String] = []
        var index = 0
        while index < arguments.count {
            switch arguments[index] {
            case "-o":
                guard index + 1 < arguments.count else { throw Refused(description: "-o needs a list of options") }
                options += try expand(arguments[index + 1])
                index += 1
            case "-f": return nil
            case "-n", "-s", "-v": break  // no mtab to write; sloppy and verbose change nothing here
            case let other where other.hasPrefix("-o"): options += try expand(String(other.dropFirst(2)))
            case let other where other.hasPrefix("-"): throw Refused(description: "unknown mount helper flag \(other)")
            case let other: positional.append(other)
            }
            index += 1
        }
        guard positional.count == 2 else {
            throw Refused(description: "usage: mount.fuse.peach HOST:PORT MOUNTPOINT [-o OPTIONS] (as mount -t fuse.peach runs it)")
        }
        return ["mount", positional[1], "--server", positional[0]] + options
    }
}
