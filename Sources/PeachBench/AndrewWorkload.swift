import Foundation
import PeachSupport

/// The Andrew benchmark's five phases over a source tree, on any `BenchFileSystem`.
public struct AndrewWorkload: Sendable {
    public enum Phase: String, CaseIterable, Codable, Sendable {
        case makeDir = "MakeDir"
        case copy = "Copy"
        case scanDir = "ScanDir"
        case readAll = "ReadAll"
        case make = "Make"
    }

    public let tree: SourceTree

    public init(tree: SourceTree) {
        self.tree = tree
    }

    /// Writes the source tree under `root` (not measured).
    public func writeSource(to fs: BenchFileSystem, root: String) throws {
        try fs.makeDirectory(root)
        for directory in tree.directories { try fs.makeDirectory(root + "/" + directory) }
        for file in tree.files { try fs.writeFile(root + "/" + file.path, file.bytes, truncate: true) }
    }

    /// Runs one phase from `source` into `target`. `compile` runs the system compiler in a
    /// directory of a real file system; without it (in-process clients) Make is simulated: each
    /// .c file is read and an object file of half its size written.
    public func run(_ phase: Phase, on fs: BenchFileSystem, source: String, target: String,
                    compile: ((String) throws -> Void)? = nil) throws {
        switch phase {
        case .makeDir:
            try fs.makeDirectory(target)
            for directory in tree.directories { try fs.makeDirectory(target + "/" + directory) }
        case .copy:
            for file in tree.files {
                try fs.writeFile(target + "/" + file.path, try fs.readBytes(source + "/" + file.path), truncate: true)
            }
        case .scanDir:
            var pending = [target]
            while let directory = pending.popLast() {
                for name in try fs.list(directory) {
                    let path = directory + "/" + name
                    _ = try fs.size(path)
                    if tree.directories.contains(String(path.dropFirst(target.count + 1))) { pending.append(path) }
                }
            }
        case .readAll:
            for file in tree.files { try fs.readFile(target + "/" + file.path) }
        case .make:
            if let compile {
                try compile(target)
            } else {
                for file in tree.files where file.path.hasSuffix(".c") {
                    let source = try fs.readBytes(target + "/" + file.path)
                    try fs.writeFile(target + "/" + file.path.dropLast(2) + ".o", Array(source.prefix(source.count / 2)), truncate: true)
                }
            }
        }
    }

    /// The Make phase through a real file system: the tree's own Makefile, with the system cc.
    public static func compileWithMake(in directory: String) throws {
        let result = try shell("make -s -j2 andrew", in: directory)
        guard result.status == 0 else { throw BenchError("make failed in \(directory): \(result.output.suffix(500))") }
    }
}

public struct BenchError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
