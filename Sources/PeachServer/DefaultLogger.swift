import Logging

extension Logger {
    /// A file server's logger when its caller gives none: notices and above, as `peach server`
    /// logs by default. swift-log's default handler would print every client's arrival and
    /// departure into the output of a benchmark or a test that runs the server in-process.
    @usableFromInline static func noticesOnly(_ label: String) -> Logger {
        var logger = Logger(label: label)
        logger.logLevel = .notice
        return logger
    }
}
