import Foundation

/// Reads /proc/mounts. A mount whose daemon died still shows here (while `mountpoint -q` says
/// no), so this is how PeachFS tells whether a directory is mounted.
enum MountTable {
    static func isMounted(_ path: String) -> Bool {
        let target = canonical(path)
        return mounts().contains { $0.point == target }
    }

    /// Each line's mount point and type.
    private static func mounts() -> [(point: String, type: Substring)] {
        guard let table = try? String(contentsOfFile: "/proc/mounts", encoding: .utf8) else { return [] }
        return table.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            return fields.count > 2 ? (unescape(String(fields[1])), fields[2]) : nil
        }
    }

    /// The PeachFS mount point that holds `path`, found from the path's text alone: nothing under
    /// the mount is looked up, so it answers while the server is down.
    static func peachMountRoot(of path: String) -> String? {
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        // By hand: NSString's standardizingPath reads symlinks, a lookup under the mount.
        var parts: [Substring] = []
        for part in absolute.split(separator: "/") where part != "." {
            if part == ".." { _ = parts.popLast() } else { parts.append(part) }
        }
        let normalized = "/" + parts.joined(separator: "/")
        let roots = mounts().filter { $0.type == "fuse.peach" }.map(\.point)
        return roots.filter { normalized == $0 || normalized.hasPrefix($0 == "/" ? "/" : $0 + "/") }.max { $0.count < $1.count }
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
