/// The protocol's own status codes. The wire never carries Linux errno values; the client maps
/// these to errno in one place (PeachClient's `FileSystemError`).
public enum StatusCode: UInt16, Sendable, Error, CustomStringConvertible {
    case ok = 0
    case notFound = 1
    case exists = 2
    case notEmpty = 3
    case notDirectory = 4
    case isDirectory = 5
    case nameTooLong = 6
    /// The FID is no longer on the server (removed while the client held it).
    case stale = 7
    case invalidArgument = 8
    case noSpace = 9
    case permissionDenied = 10
    case notSupported = 11
    case tooManyLinks = 12
    case ioError = 13
    /// The peer sent something the protocol does not allow (bad frame, unknown opcode).
    case protocolError = 14
    /// The request came before a Hello.
    case notIntroduced = 15
    case versionMismatch = 16
    case crossDevice = 17
    /// An offset or size past the server's maximum file size (`--max-file-size`).
    case fileTooLarge = 18
    /// The change would take the volume past its quota (`--quota`).
    case quotaExceeded = 19
    /// The caller's credential does not allow it (mode bits, ownership).
    case accessDenied = 20
    /// The connection's machine may only read (`--read-only-clients`).
    case readOnly = 21
    /// A conditional StoreData: the file is no longer at the data version the copy was based on.
    case versionConflict = 22
    /// The server does one such thing at a time (a backup): try again later.
    case busy = 23

    public var description: String {
        switch self {
        case .ok: "ok"
        case .notFound: "not found"
        case .exists: "exists"
        case .notEmpty: "directory not empty"
        case .notDirectory: "not a directory"
        case .isDirectory: "is a directory"
        case .nameTooLong: "name too long"
        case .stale: "stale file identifier"
        case .invalidArgument: "invalid argument"
        case .noSpace: "no space left"
        case .permissionDenied: "operation not permitted"
        case .notSupported: "not supported"
        case .tooManyLinks: "too many links"
        case .ioError: "I/O error"
        case .protocolError: "protocol error"
        case .notIntroduced: "Hello required first"
        case .versionMismatch: "protocol version mismatch"
        case .crossDevice: "cross-device link"
        case .fileTooLarge: "file too large"
        case .quotaExceeded: "volume quota exceeded"
        case .accessDenied: "permission denied"
        case .readOnly: "read-only for this client"
        case .versionConflict: "changed since the copy was taken"
        case .busy: "busy: one at a time, try again later"
        }
    }
}
