import ArgumentParser

@main
struct Peach: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peach",
        abstract: "PeachFS: an AFS-style whole-file caching distributed file system.",
        version: "0.1.0",
        subcommands: [ServerCommand.self, MountCommand.self, FsCommand.self, AdminCommand.self, BenchCommand.self, CertCommand.self]
    )
}
