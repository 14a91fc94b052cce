import Foundation

/// A private directory under /tmp, removed by `remove()`.
public struct TemporaryDirectory: Sendable {
    public let path: String

    /// A new directory `prefix-XXXXXX` in `parent` (/tmp; /dev/shm for one on tmpfs).
    public init(prefix: String = "peach-test", in parent: String = "/tmp") throws {
        var template = Array("\(parent)/\(prefix)-XXXXXX".utf8CString)
        guard let created = mkdtemp(&template) else {
            throw CocoaError(.fileWriteUnknown)
        }
        path = String(cString: created)
    }

    public func subdirectory(_ name: String) throws -> String {
        let full = path + "/" + name
        try FileManager.default.createDirectory(atPath: full, withIntermediateDirectories: true)
        return full
    }

    public func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}
