import ArgumentParser
import Foundation
import Glibc

@main
struct Peach: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peach",
        abstract: "PeachFS: an AFS-style whole-file caching distributed file system.",
        version: "0.1.0",
        subcommands: [ServerCommand.self, MountCommand.self, FsCommand.self, AdminCommand.self, BenchCommand.self, CertCommand.self]
    )

    /// The arguments after mount(8)'s and `-o`'s spellings are spelled out; what a background
    /// mount passes to its daemon.
    nonisolated(unsafe) static var arguments: [String] = []

    static func main() {
        let name = (CommandLine.arguments.first.map { ($0 as NSString).lastPathComponent }) ?? "peach"
        var given = Array(CommandLine.arguments.dropFirst())
        do {
            if name.hasPrefix("mount.fuse.peach") || name.hasPrefix("mount.peach") {
                // Run by mount(8) for `mount -t fuse.peach` and fstab lines.
                guard let translated = try MountOptions.helperArguments(given) else { return }
                given = translated
            } else if given.first == "mount" {
                given = try MountOptions.spellOut(given)
            }
        } catch {
            FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
            Glibc.exit(32)  // mount(8)'s "mount failure"
        }
        arguments = given
        do {
            var command = try parseAsRoot(given)
            try command.run()
        } catch {
            // As `main` would, but naming an unknown `-o` option as it was given, not as its
            // `--` spelling.
            let message = MountOptions.asGiven(fullMessage(for: error))
            guard message != fullMessage(for: error) else { exit(withError: error) }
            FileHandle.standardError.write(Data((message + "\n").utf8))
            exit(withError: ExitCode(exitCode(for: error).rawValue == 0 ? 1 : exitCode(for: error).rawValue))
        }
    }
}
