import Foundation

/// The system's tar (GNU tar, in every Debian install), for backups and restores: a backup is a
/// plain archive that `tar -tf` lists and any machine can unpack.
enum Tar {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Runs `/usr/bin/tar arguments` and returns what it printed; a failure carries tar's first
    /// complaint, after `what`.
    @discardableResult
    static func run(_ arguments: [String], what: String) throws -> String {
        let tar = Process()
        tar.executableURL = URL(fileURLWithPath: "/usr/bin/tar")
        tar.arguments = arguments
        let output = Pipe()
        let errors = Pipe()
        tar.standardOutput = output
        tar.standardError = errors
        do { try tar.run() } catch { throw Failure(description: "\(what): cannot run /usr/bin/tar: \(error)") }
        // tar complains in a line or two: its error pipe cannot fill while the output is read.
        let printed = output.fileHandleForReading.readDataToEndOfFile()
        let complaint = errors.fileHandleForReading.readDataToEndOfFile()
        tar.waitUntilExit()
        guard tar.terminationStatus == 0 else {
            let reason = String(decoding: complaint, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? "tar failed"
            throw Failure(description: "\(what): \(reason)")
        }
        return String(decoding: printed, as: UTF8.self)
    }
}
