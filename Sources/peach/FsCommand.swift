import ArgumentParser
import CPeachSystem
import Foundation
import PeachClient
import PeachFUSE

struct FsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fs",
        abstract: "Ask the cache manager serving a path (as OpenAFS's fs command does).",
        subcommands: [Stats.self, Flush.self, CallBacks.self, Conflicts.self]
    )

    struct Stats: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the statistics of the cache manager serving PATH, as JSON.")
        @Argument(help: "Any path inside a PeachFS mount.") var path: String
        func run() throws { print(try ControlClient.get(ControlAttributes.stats, path: path)) }
    }

    struct Flush: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Drop the cached copy of PATH (a dirty file is stored first).")
        @Argument(help: "A file or directory inside a PeachFS mount.") var path: String
        func run() throws { try ControlClient.set(ControlAttributes.flush, path: path) }
    }

    struct CallBacks: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "callbacks", abstract: "List the callbacks the cache manager serving PATH holds (FID, path, expiry).")
        @Argument(help: "Any path inside a PeachFS mount.") var path: String
        func run() throws { print(try ControlClient.get(ControlAttributes.callbacks, path: path)) }
    }
}

extension FsCommand {
    struct Conflicts: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the dirty copies the cache manager serving PATH kept aside because the server had a newer version.",
            discussion: "Each copy's bytes are in the file shown; copy what you need, then remove the file and its .json record (docs/recovery.md).")
        @Argument(help: "Any path inside a PeachFS mount.") var path: String
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            let text = try ControlClient.get(ControlAttributes.conflicts, path: path)
            if json { return print(text) }
            let conflicts = try JSONDecoder().decode([Conflict].self, from: Data(text.utf8))
            if conflicts.isEmpty { return print("no conflicts") }
            for conflict in conflicts {
                let when = Date(timeIntervalSince1970: TimeInterval(conflict.keptAt)).formatted(.iso8601)
                print("\(conflict.path ?? "(path unknown)")  fid \(conflict.fid), based on version \(conflict.baseVersion), "
                      + "\(conflict.size) bytes, kept \(when)\n    \(conflict.file)")
            }
        }
    }
}

/// The client side of the control attributes (see `ControlAttributes`).
enum ControlClient {
    static func get(_ name: String, path: String) throws -> String {
        var buffer = [UInt8](repeating: 0, count: 65536)
        let n = getxattr(path, name, &buffer, buffer.count)
        guard n >= 0 else { throw failure(path) }
        return String(decoding: buffer[0..<n], as: UTF8.self)
    }

    static func set(_ name: String, path: String) throws {
        // Ask first: on any other file system the set would store a real attribute.
        _ = try get(ControlAttributes.stats, path: path)
        guard setxattr(path, name, "", 0, 0) == 0 else { throw failure(path) }
    }

    private static func failure(_ path: String) -> CommandFailure {
        let code = errno
        if code == ENODATA || code == ENOTSUP || code == EOPNOTSUPP {
            return CommandFailure("\(path) is not in a PeachFS mount")
        }
        return CommandFailure("\(path): \(String(cString: strerror(code)))")
    }
}
