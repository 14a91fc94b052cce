import NIOCore

/// What a frame carries. See docs/protocol.md.
public enum FrameKind: UInt8, Sendable {
    /// Client to server: a request with a fresh request id.
    case request = 1
    /// Server to client: the reply to the request with the same id.
    case reply = 2
    /// Either way: a piece of file data belonging to the request or reply with the same id.
    case data = 3
    /// Server to client: a CallBack or InitCallBackState push, numbered by the server.
    case push = 4
    /// Client to server: acknowledges the push with the same id.
    case pushAck = 5
}

/// One length-prefixed frame on the wire:
///
///     u32 length of what follows | u8 kind | u8 flags | u32 id | u16 opcode | body
public struct Frame: Sendable, Equatable {
    public static let headerSize = 4 + 1 + 1 + 4 + 2
    /// The largest body a peer accepts; larger frames close the connection.
    public static let maximumBodySize = 4 << 20
    /// The size of the data chunks that whole files travel in.
    public static let dataChunkSize = 1 << 20

    /// Flag on a `data` frame: the last chunk of its stream.
    public static let flagLastChunk: UInt8 = 1
    /// Flag on a `request` frame: its body starts with a `RequestNumber`.
    public static let flagNumbered: UInt8 = 2

    public var kind: FrameKind
    public var flags: UInt8
    public var id: UInt32
    public var opcode: UInt16
    public var body: ByteBuffer

    public init(kind: FrameKind, flags: UInt8 = 0, id: UInt32, opcode: UInt16, body: ByteBuffer) {
        self.kind = kind
        self.flags = flags
        self.id = id
        self.opcode = opcode
        self.body = body
    }

    public var isLastChunk: Bool { flags & Frame.flagLastChunk != 0 }
}

/// Errors in a peer's bytes. A connection that sees one is closed.
public enum ProtocolError: Error, Equatable, CustomStringConvertible {
    case frameTooLarge(Int)
    case unknownFrameKind(UInt8)
    case unknownOpcode(UInt16)
    case truncated(String)
    case invalidValue(String)
    case trailingBytes(Int)

    public var description: String {
        switch self {
        case .frameTooLarge(let n): "frame of \(n) bytes exceeds the limit of \(Frame.maximumBodySize)"
        case .unknownFrameKind(let k): "unknown frame kind \(k)"
        case .unknownOpcode(let o): "unknown opcode \(o)"
        case .truncated(let what): "truncated \(what)"
        case .invalidValue(let what): "invalid \(what)"
        case .trailingBytes(let n): "\(n) unexpected bytes after the message"
        }
    }
}
