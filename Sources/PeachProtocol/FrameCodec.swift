import NIOCore

/// Splits a byte stream into frames; refuses frames over the size limit before buffering them.
public struct FrameDecoder: ByteToMessageDecoder, Sendable {
    public typealias InboundOut = Frame

    public init() {}

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try Self.decodeFrame(from: &buffer) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }

    /// Takes one whole frame off the front of `buffer`, or nothing if it is not all there yet.
    public static func decodeFrame(from buffer: inout ByteBuffer) throws -> Frame? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        let bodyLength = Int(length) - (Frame.headerSize - 4)
        guard bodyLength >= 0 else { throw ProtocolError.truncated("frame header") }
        guard bodyLength <= Frame.maximumBodySize else { throw ProtocolError.frameTooLarge(bodyLength) }
        guard buffer.readableBytes >= 4 + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: 4)
        let rawKind: UInt8 = buffer.readInteger()!
        guard let kind = FrameKind(rawValue: rawKind) else { throw ProtocolError.unknownFrameKind(rawKind) }
        let flags: UInt8 = buffer.readInteger()!
        let id: UInt32 = buffer.readInteger()!
        let opcode: UInt16 = buffer.readInteger()!
        let body = buffer.readSlice(length: bodyLength)!
        return Frame(kind: kind, flags: flags, id: id, opcode: opcode, body: body)
    }
}

public struct FrameEncoder: MessageToByteEncoder, Sendable {
    public typealias OutboundIn = Frame

    public init() {}

    public func encode(data frame: Frame, out: inout ByteBuffer) throws {
        Self.encode(frame, into: &out)
    }

    public static func encode(_ frame: Frame, into out: inout ByteBuffer) {
        out.writeInteger(UInt32(Frame.headerSize - 4 + frame.body.readableBytes))
        out.writeInteger(frame.kind.rawValue)
        out.writeInteger(frame.flags)
        out.writeInteger(frame.id)
        out.writeInteger(frame.opcode)
        var body = frame.body
        out.writeBuffer(&body)
    }
}
