import Foundation

/// Reads /proc/mounts. A mount whose daemon died still shows here (while `mountpoint -q` says
/// no), so this is how PeachFS tells whether a directory is mounted.
enum MountTable {
    static func isMounted(_ path: String) -> Bool {
        guard let table = try? String(contentsOfFile: "/proc/mounts", encoding: .utf8) else { return false }
        let target = canonical(path)
        return table.split(separator: "\n").contains { line in
            let fields = line.split(separator: " ")
            return fields.count > 1 && unescape(String(fields[1])) == target
        }
    }

    static func canonical(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// /proc/mounts writes space, tab, newline and backslash as octal escapes.
    private static func unescape(_ field: String) -> String {
        field.replacingOccurrences(of: "\\040", with: " ").replacingOccurrences(of: "\\011", with: "\t")
            .replacingOccurrences(of: "\\012", with: "\n").replacingOccurrences(of: "\\134", with: "\\")
    }
}
