import NIOCore
import NIOEmbedded
import PeachProtocol
import Testing
@testable import PeachClient

/// The client's frame decoder on its own: a large data frame comes out in pieces as its bytes
/// arrive, every other frame whole.
@Suite("Streaming frame decoder")
struct StreamingFrameDecoderTests {
    func encoded(_ frames: [Frame]) -> ByteBuffer {
        var buffer = ByteBuffer()
        for frame in frames { FrameEncoder.encode(frame, into: &buffer) }
        return buffer
    }

    /// Feeds `bytes` in slices of `step` and returns every frame that came out.
    func decode(_ bytes: ByteBuffer, step: Int) throws -> [Frame] {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(StreamingFrameDecoder()))
        var rest = bytes
        while rest.readableBytes > 0 {
            try channel.writeInbound(rest.readSlice(length: min(step, rest.readableBytes))!)
        }
        var frames: [Frame] = []
        while let frame = try channel.readInbound(as: Frame.self) { frames.append(frame) }
        _ = try channel.finish()
        return frames
    }

    @Test("a large data frame arrives in pieces whose bodies add up to it, the last-chunk flag on the final piece only",
          arguments: [1000, 16 << 10, 70_000])
    func largeDataFrameInPieces(step: Int) throws {
        let body = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let reply = Frame(kind: .reply, id: 9, opcode: Opcode.fetchData.rawValue, body: ByteBuffer(bytes: [1, 2, 3]))
        let data = Frame(kind: .data, flags: Frame.flagLastChunk, id: 9, opcode: Opcode.fetchData.rawValue, body: ByteBuffer(bytes: body))
        let push = Frame(kind: .push, id: 4, opcode: 0, body: ByteBuffer(bytes: [5]))
        let frames = try decode(encoded([reply, data, push]), step: step)
        #expect(frames.first == reply)
        #expect(frames.last == push)
        let pieces = frames.dropFirst().dropLast()
        #expect(pieces.count > 1)
        #expect(pieces.allSatisfy { $0.kind == .data && $0.id == 9 && $0.opcode == Opcode.fetchData.rawValue })
        #expect(pieces.dropLast().allSatisfy { !$0.isLastChunk } && pieces.last?.isLastChunk == true)
        #expect(pieces.flatMap { Array($0.body.readableBytesView) } == body)
    }

    @Test("a small data frame, and a large one that is not the last, pass as whole frames and pieces with their flags")
    func smallAndNotLast() throws {
        let small = Frame(kind: .data, flags: Frame.flagLastChunk, id: 1, opcode: 5, body: ByteBuffer(bytes: [UInt8](repeating: 1, count: 100)))
        let large = Frame(kind: .data, flags: 0, id: 2, opcode: 5, body: ByteBuffer(bytes: [UInt8](repeating: 2, count: 100_000)))
        let frames = try decode(encoded([small, large]), step: 40_000)
        #expect(frames.first == small)
        #expect(frames.dropFirst().allSatisfy { !$0.isLastChunk && $0.id == 2 })
        #expect(frames.dropFirst().reduce(0) { $0 + $1.body.readableBytes } == 100_000)
    }

    @Test("a data frame announced past the size limit closes the connection, as a whole one does")
    func oversized() throws {
        var header = ByteBuffer()
        header.writeInteger(UInt32(Frame.headerSize - 4 + Frame.maximumBodySize + 1))
        header.writeInteger(FrameKind.data.rawValue)
        header.writeInteger(UInt8(0))
        header.writeInteger(UInt32(1))
        header.writeInteger(UInt16(5))
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(StreamingFrameDecoder()))
        #expect(throws: ProtocolError.frameTooLarge(Frame.maximumBodySize + 1)) { try channel.writeInbound(header) }
        _ = try? channel.finish()
    }

    @Test("a fetch's data budget takes what was asked for and refuses a byte more")
    func dataBudget() throws {
        let budget = DataBudget(100)
        try budget.take(60)
        try budget.take(40)
        #expect(throws: FileSystemError.self) { try budget.take(1) }
    }
}
