import Foundation
import NIOCore
import PeachMetrics
import PeachSupport

extension MetricsEndpoint {
    /// `--metrics` names a host and a port, both: a metrics port has no default.
    static func validate(_ address: String) throws {
        let port = address.split(separator: ":").last.flatMap { Int($0) }
        guard address.contains(":"), ServerAddress(address) != nil, let port, (0...65535).contains(port) else {
            throw CommandFailure("--metrics must be HOST:PORT, got '\(address)'")
        }
    }

    /// `--metrics HOST:PORT` (already validated), with a one-line reason if it cannot listen.
    static func start(address: String, refresh: @escaping @Sendable () -> Void) throws -> MetricsEndpoint {
        let parsed = ServerAddress(address)!
        do {
            return try start(host: parsed.host, port: parsed.port, refresh: refresh)
        } catch {
            let reason = if let io = error as? IOError { String(cString: strerror(io.errnoCode)) } else { "\(error)" }
            throw CommandFailure("cannot serve metrics on \(address): \(reason)")
        }
    }
}
