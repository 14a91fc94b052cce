import NIOCore
import PeachProtocol

/// The client's frame decoder: as `FrameDecoder`, except that a large data frame is passed on in
/// pieces as its bytes arrive, each piece a data frame of its own (with the original's last-chunk
/// flag on the final piece only).
///
/// Waiting for a whole 1 MiB data frame made `ByteToMessageDecoder` copy every byte of a fetch
/// into its buffer (a socket read or a TLS record brings 16 to 64 KiB), and copy again as that
/// buffer grew. A piece is a slice of the bytes as they were read: the cache file's writer
/// (`FetchWriter`) gets them with no copy in between.
struct StreamingFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = Frame

    /// Data frames at least this long are streamed; shorter ones (a small file's) are not worth
    /// the pieces.
    static let streamedBodySize = 64 << 10

    /// The data frame being passed on, and how much of its body is still to come.
    private var streaming: (header: Frame, remaining: Int)?

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if let piece = nextPiece(from: &buffer) {
            context.fireChannelRead(wrapInboundOut(piece))
            return .continue
        }
        if streaming != nil { return .needMoreData }
        if try startStreaming(from: &buffer) { return .continue }
        guard let frame = try FrameDecoder.decodeFrame(from: &buffer) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }

    /// Whatever the buffer holds of the streamed frame's body, as a frame of its own.
    private mutating func nextPiece(from buffer: inout ByteBuffer) -> Frame? {
        guard let (header, left) = streaming, buffer.readableBytes > 0 else { return nil }
        let count = min(left, buffer.readableBytes)
        let remaining = left - count
        var piece = header
        piece.body = buffer.readSlice(length: count)!
        if remaining > 0 {
            piece.flags &= ~Frame.flagLastChunk
            streaming = (header, remaining)
        } else {
            streaming = nil
        }
        return piece
    }

    /// Takes a large data frame's header off the buffer and starts passing its body on; false
    /// for any other frame (or one whose header has not all arrived).
    private mutating func startStreaming(from buffer: inout ByteBuffer) throws -> Bool {
        let start = buffer.readerIndex
        guard buffer.readableBytes >= Frame.headerSize,
              let length = buffer.getInteger(at: start, as: UInt32.self),
              let kind = buffer.getInteger(at: start + 4, as: UInt8.self),
              kind == FrameKind.data.rawValue else { return false }
        let bodyLength = Int(length) - (Frame.headerSize - 4)
        guard bodyLength >= Self.streamedBodySize else { return false }
        // The same limit as a whole frame's: a peer may not announce more.
        guard bodyLength <= Frame.maximumBodySize else { throw ProtocolError.frameTooLarge(bodyLength) }
        buffer.moveReaderIndex(forwardBy: 5)
        let flags: UInt8 = buffer.readInteger()!
        let id: UInt32 = buffer.readInteger()!
        let opcode: UInt16 = buffer.readInteger()!
        streaming = (Frame(kind: .data, flags: flags, id: id, opcode: opcode, body: ByteBuffer()), bodyLength)
        return true
    }
}
