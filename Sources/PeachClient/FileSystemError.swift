import Foundation
import NIOCore
import PeachProtocol

/// The one error type of the cache-manager core: an errno for the kernel, and the reason.
public struct FileSystemError: Error, Equatable, CustomStringConvertible {
    public var errno: Int32
    public var reason: String
    /// The server's status code, when the server refused the request.
    public var serverCode: StatusCode?
    /// The server could not be reached, or did not answer: the request may be retried
    /// (`ServerConnection.RetryPolicy`).
    public var serverUnreachable = false

    /// The server could not be reached or did not answer in time.
    public static func unreachable(_ errno: Int32, _ reason: String) -> FileSystemError {
        var error = FileSystemError(errno, reason)
        error.serverUnreachable = true
        return error
    }

    /// The server closed the connection without an answer (as a TLS-only server does to a
    /// plain connection's first request).
    public var isConnectionClosed: Bool { reason == RPCHandler.closedReason }

    public init(_ errno: Int32, _ reason: String = "") {
        self.errno = errno
        self.reason = reason
    }

    public var description: String {
        let name = String(cString: strerror(errno))
        return reason.isEmpty ? name : "\(name): \(reason)"
    }

    public static let notFound = FileSystemError(ENOENT)
    public static let exists = FileSystemError(EEXIST)
    public static let isDirectory = FileSystemError(EISDIR)
    public static let notDirectory = FileSystemError(ENOTDIR)
    public static let invalid = FileSystemError(EINVAL)
    public static let badHandle = FileSystemError(EBADF)
    public static let stale = FileSystemError(ESTALE)
    public static let nameTooLong = FileSystemError(ENAMETOOLONG)
    /// The server answered a request with a reply of another kind.
    static let unexpectedReply = FileSystemError(EIO, "unexpected reply")

    /// The one place protocol status codes become errno values.
    public init(_ code: StatusCode) {
        let value: Int32 = switch code {
        case .ok: 0
        case .notFound: ENOENT
        case .exists: EEXIST
        case .notEmpty: ENOTEMPTY
        case .notDirectory: ENOTDIR
        case .isDirectory: EISDIR
        case .nameTooLong: ENAMETOOLONG
        case .stale: ESTALE
        case .invalidArgument: EINVAL
        case .noSpace: ENOSPC
        case .permissionDenied: EPERM
        case .notSupported: EOPNOTSUPP
        case .tooManyLinks: EMLINK
        case .ioError, .protocolError, .notIntroduced, .versionMismatch: EIO
        case .crossDevice: EXDEV
        case .fileTooLarge: EFBIG
        case .quotaExceeded: EDQUOT
        case .accessDenied: EACCES
        case .readOnly: EROFS
        case .versionConflict: ESTALE
        case .busy: EBUSY
        }
        self.init(value, "server: \(code)")
        serverCode = code
    }

    /// Transport failures: the server is unreachable or the connection broke.
    public static func transport(_ error: Error) -> FileSystemError {
        if let error = error as? FileSystemError { return error }
        if let code = error as? StatusCode { return FileSystemError(code) }
        return .unreachable(EIO, "server unreachable: \(error)")
    }
}
