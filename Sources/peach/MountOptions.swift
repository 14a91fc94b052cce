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

    /// One `-o` option as `peach mount` spells it: `--name` and, if it has one, its value.
    struct Spelled {
        var name: String
        var value: String?
        /// As given in the `-o` list, for errors.
        var given: String
        var arguments: [String] { ["--" + name] + (value.map { [$0] } ?? []) }
    }

    /// `--name` → `-o given_name` for every option spelled out, so that a parse error can name the
    /// option as the user wrote it.
    nonisolated(unsafe) static var spellings: [String: String] = [:]

    /// An argument parser's error message with each spelled-out option named as given.
    static func asGiven(_ message: String) -> String {
        var message = message
        for (spelled, given) in spellings { message = message.replacingOccurrences(of: "'\(spelled)'", with: "'\(given)'") }
        return message
    }

    /// The options of one `-o` list, mount(8)'s own dropped.
    static func parse(_ list: String) throws -> [Spelled] {
        var options: [Spelled] = []
        for option in list.split(separator: ",").map(String.init) {
            let key = option.split(separator: "=", maxSplits: 1).first.map(String.init) ?? option
            if generic.contains(key) || key.hasPrefix("x-") || key == "comment" { continue }
            if key == "ro" { throw Refused(description: "-o ro: PeachFS mounts are read-write (a read-only client is the server's --read-only-clients)") }
            guard !key.isEmpty, key.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }) else {
                throw Refused(description: "-o \(option): not an option name")
            }
            let value = option.firstIndex(of: "=").map { String(option[option.index(after: $0)...]) }
            options.append(Spelled(name: key.replacingOccurrences(of: "_", with: "-"), value: value, given: key))
            spellings["--" + key.replacingOccurrences(of: "_", with: "-")] = "-o " + key
        }
        return options
    }

    /// An option given a value through `-o` and again elsewhere (the command line, another `-o`,
    /// the helper's source) must be given the same value: otherwise one would silently win, as
    /// `-o server=` once did over an fstab line's source.
    static func requireAgreement(_ fromOptions: [Spelled], with others: [String]) throws {
        var values: [String: String] = [:]
        for option in fromOptions {
            guard let value = option.value else { continue }
            if let earlier = values[option.name], earlier != value {
                throw Refused(description: "-o \(option.name)=\(earlier) and -o \(option.name)=\(value) disagree: give it once")
            }
            values[option.name] = value
        }
        var index = 0
        while index < others.count {
            defer { index += 1 }
            guard others[index].hasPrefix("--") else { continue }
            var name = String(others[index].dropFirst(2))
            var value: String?
            if let equals = name.firstIndex(of: "=") {
                value = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            } else if values[name] != nil, index + 1 < others.count {
                value = others[index + 1]
                index += 1
            }
            if let value, let fromOption = values[name], fromOption != value {
                throw Refused(description: "--\(name) \(value) and -o \(name)=\(fromOption) disagree: give it once")
            }
        }
    }

    /// `peach mount ... -o LIST ...` with each `-o LIST` (or `-oLIST`) spelled out.
    static func spellOut(_ arguments: [String]) throws -> [String] {
        var result: [String] = []
        var others: [String] = []
        var fromOptions: [Spelled] = []
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            if argument == "-o" {
                guard index + 1 < arguments.count else { throw Refused(description: "-o needs a list of options") }
                let options = try parse(arguments[index + 1])
                fromOptions += options
                result += options.flatMap(\.arguments)
                index += 2
                continue
            }
            if argument.hasPrefix("-o") && argument.count > 2 {
                let options = try parse(String(argument.dropFirst(2)))
                fromOptions += options
                result += options.flatMap(\.arguments)
            } else {
                result.append(argument)
                others.append(argument)
            }
            index += 1
        }
        try requireAgreement(fromOptions, with: others)
        return result
    }

    /// mount(8) runs `mount.fuse.peach SOURCE MOUNTPOINT [-o LIST] [-n] [-s] [-f] [-v]`: the
    /// arguments of the same `peach mount`, or nil for `-f` (a fake mount: nothing to do).
    static func helperArguments(_ arguments: [String]) throws -> [String]? {
        var positional: [String] = []
        var options: [Spelled] = []
        var index = 0
        while index < arguments.count {
            switch arguments[index] {
            case "-o":
                guard index + 1 < arguments.count else { throw Refused(description: "-o needs a list of options") }
                options += try parse(arguments[index + 1])
                index += 1
            case "-f": return nil
            case "-n", "-s", "-v": break  // no mtab to write; sloppy and verbose change nothing here
            case let other where other.hasPrefix("-o"): options += try parse(String(other.dropFirst(2)))
            case let other where other.hasPrefix("-"): throw Refused(description: "unknown mount helper flag \(other)")
            case let other: positional.append(other)
            }
            index += 1
        }
        guard positional.count == 2 else {
            throw Refused(description: "usage: mount.fuse.peach HOST:PORT MOUNTPOINT [-o OPTIONS] (as mount -t fuse.peach runs it)")
        }
        let source = ["--server", positional[0]]
        try requireAgreement(options, with: source)
        return ["mount", positional[1]] + source + options.flatMap(\.arguments)
    }
}
