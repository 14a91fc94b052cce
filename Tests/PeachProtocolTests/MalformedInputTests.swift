import NIOCore
import Testing
@testable import PeachProtocol

@Suite("Malformed input is refused, never trusted")
struct MalformedInputTests {
    @Test("every truncation of every request is an error", arguments: everyRequest)
    func truncatedRequests(_ request: Request) throws {
        var buffer = ByteBuffer()
        RequestCodec.encode(request, into: &buffer)
        for length in 0..<buffer.readableBytes {
            #expect(throws: ProtocolError.self) {
                _ = try RequestCodec.decode(opcode: request.opcode.rawValue, body: buffer.getSlice(at: 0, length: length)!)
            }
        }
    }

    @Test("every request with a trailing byte is an error", arguments: everyRequest)
    func trailingBytes(_ request: Request) throws {
        var buffer = ByteBuffer()
        RequestCodec.encode(request, into: &buffer)
        buffer.writeInteger(UInt8(0))
        #expect(throws: ProtocolError.trailingBytes(1)) {
            _ = try RequestCodec.decode(opcode: request.opcode.rawValue, body: buffer)
        }
    }

    @Test("every truncation of every reply is an error")
    func truncatedReplies() throws {
        for (opcode, reply) in everyReply {
            var buffer = ByteBuffer()
            ReplyCodec.encode(reply, into: &buffer)
            for length in 0..<buffer.readableBytes {
                #expect(throws: ProtocolError.self) {
                    _ = try ReplyCodec.decode(opcode: opcode.rawValue, body: buffer.getSlice(at: 0, length: length)!)
                }
            }
        }
    }

    @Test("unknown opcodes, statuses, file types and invalid UTF-8 are errors")
    func invalidValues() throws {
        #expect(throws: ProtocolError.unknownOpcode(999)) { _ = try RequestCodec.decode(opcode: 999, body: ByteBuffer()) }
        #expect(throws: ProtocolError.unknownOpcode(0)) { _ = try PushCodec.decode(opcode: 0, body: ByteBuffer()) }
        var status = ByteBuffer()
        status.writeInteger(UInt16(60000))
        #expect(throws: ProtocolError.self) { _ = try ReplyCodec.decode(opcode: Opcode.ping.rawValue, body: status) }

        var badName = ByteBuffer()
        badName.writeFID(.root)
        badName.writeInteger(UInt16(2))
        badName.writeBytes([0xC3, 0x28])
        #expect(throws: ProtocolError.invalidValue("name")) {
            _ = try RequestCodec.decode(opcode: Opcode.removeFile.rawValue, body: badName)
        }

        var badType = ByteBuffer()
        CreateRequest(directory: .root, name: "x", type: .regular, mode: 0, uid: 0, gid: 0).encodeForTest(into: &badType)
        badType.setInteger(UInt8(200), at: 16 + 2 + 1)
        #expect(throws: ProtocolError.self) { _ = try RequestCodec.decode(opcode: Opcode.createFile.rawValue, body: badType) }

        var badNanoseconds = ByteBuffer()
        badNanoseconds.writeFID(.root)
        badNanoseconds.writeInteger(UInt64(0))
        badNanoseconds.writeInteger(Int64(0))
        badNanoseconds.writeInteger(UInt32(1_000_000_000))
        #expect(throws: ProtocolError.invalidValue("nanoseconds")) {
            _ = try RequestCodec.decode(opcode: Opcode.storeData.rawValue, body: badNanoseconds)
        }
    }

    @Test("a list count larger than the body is refused before allocating")
    func hugeCounts() throws {
        var body = ByteBuffer()
        body.writeInteger(UInt32.max)
        #expect(throws: ProtocolError.truncated("FID list")) {
            _ = try RequestCodec.decode(opcode: Opcode.bulkStatus.rawValue, body: body)
        }
        #expect(throws: ProtocolError.self) { _ = try DirectoryListingCodec.decode(body) }
    }
}

extension CreateRequest {
    func encodeForTest(into buffer: inout ByteBuffer) {
        RequestCodec.encode(.createFile(self), into: &buffer)
    }
}
