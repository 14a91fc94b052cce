import Logging

extension Logger {
    /// A cache manager's logger when its caller gives none: notices and above, as `peach mount`
    /// logs by default. swift-log's default handler would print every info line to stderr, into
    /// the output of a benchmark or a test that runs cache managers in-process.
    @usableFromInline static func noticesOnly(_ label: String) -> Logger {
        var logger = Logger(label: label)
        logger.logLevel = .notice
        return logger
    }
}
