import NIOCore
import Testing
@testable import PeachProtocol

@Suite("Frame codec")
struct FrameCodecTests {
    func encoded(_ frames: [Frame]) -> ByteBuffer {
        var buffer = ByteBuffer()
        for frame in frames { FrameEncoder.encode(frame, into: &buffer) }
        return buffer
    }

    let frames: [Frame] = [
        Frame(kind: .request, id: 1, opcode: Opcode.ping.rawValue, body: ByteBuffer()),
        Frame(kind: .data, flags: Frame.flagLastChunk, id: 2, opcode: 5, body: ByteBuffer(bytes: Array(0..<200))),
        Frame(kind: .push, id: 3, opcode: 1, body: ByteBuffer(bytes: [1, 2, 3])),
        Frame(kind: .pushAck, id: 3, opcode: 1, body: ByteBuffer()),
    ]

    func decodeAll(_ chunks: [ByteBuffer]) throws -> [Frame] {
        var pending = ByteBuffer()
        var out: [Frame] = []
        for var chunk in chunks {
            pending.writeBuffer(&chunk)
            while let frame = try FrameDecoder.decodeFrame(from: &pending) { out.append(frame) }
        }
        #expect(pending.readableBytes == 0)
        return out
    }

    @Test("all at once, byte by byte and in random splits give the same frames")
    func splits() throws {
        let whole = encoded(frames)
        #expect(try decodeAll([whole]) == frames)
        let bytes = Array(whole.readableBytesView)
        #expect(try decodeAll(bytes.map { ByteBuffer(bytes: [$0]) }) == frames)
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<50 {
            var chunks: [ByteBuffer] = []
            var offset = 0
            while offset < bytes.count {
                let length = Int.random(in: 1...17, using: &generator)
                chunks.append(ByteBuffer(bytes: bytes[offset..<min(bytes.count, offset + length)]))
                offset += length
            }
            #expect(try decodeAll(chunks) == frames)
        }
    }

    @Test("a frame over the size limit is refused from its header alone")
    func tooLarge() {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(Frame.maximumBodySize + 100))
        #expect(throws: ProtocolError.self) { _ = try FrameDecoder.decodeFrame(from: &buffer) }
    }

    @Test("an unknown frame kind and a length shorter than the header are refused")
    func badHeaders() {
        var unknownKind = encoded([frames[0]])
        unknownKind.setInteger(UInt8(77), at: 4)
        #expect(throws: ProtocolError.unknownFrameKind(77)) { _ = try FrameDecoder.decodeFrame(from: &unknownKind) }
        var short = ByteBuffer()
        short.writeInteger(UInt32(3))
        short.writeBytes([1, 2, 3])
        #expect(throws: ProtocolError.self) { _ = try FrameDecoder.decodeFrame(from: &short) }
    }
}
