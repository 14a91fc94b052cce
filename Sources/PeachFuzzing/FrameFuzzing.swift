import NIOCore
import PeachProtocol

/// The per-input logic of the fuzz targets (`Fuzz/`), shared with the replay test of the committed
/// corpus (`Tests/PeachServerTests/FuzzCorpusReplayTests.swift`). Throwing is fine, trapping is a bug.
public enum FuzzEntry {
    /// The most frames one input is split into (inputs are small: libFuzzer's default is 4 KiB).
    public static let maximumFrames = 256

    /// Frame decoding and every message codec: the input is a byte stream split with
    /// `FrameDecoder.decodeFrame(from:)`; each frame's body goes through the request (with and
    /// without the credential), reply, push and directory-listing decoders. What decodes is
    /// encoded again and must decode to the same value.
    public static func frameInput(_ bytes: [UInt8]) {
        var buffer = ByteBuffer(bytes: bytes)
        for _ in 0..<maximumFrames {
            let frame: Frame?
            do {
                frame = try FrameDecoder.decodeFrame(from: &buffer)
            } catch {
                return
            }
            guard let frame else { return }
            decodeBody(of: frame)
            // The encoder writes back what the decoder read.
            var encoded = ByteBuffer()
            FrameEncoder.encode(frame, into: &encoded)
            var again = encoded
            guard let decoded = try? FrameDecoder.decodeFrame(from: &again), decoded == frame, again.readableBytes == 0 else {
                fatalError("frame \(frame) does not survive encoding")
            }
        }
    }

    static func decodeBody(of frame: Frame) {
        let (opcode, body) = (frame.opcode, frame.body)
        if let request = try? RequestCodec.decode(opcode: opcode, body: body) {
            var encoded = ByteBuffer()
            RequestCodec.encode(request, into: &encoded)
            let again = try? RequestCodec.decode(opcode: request.opcode.rawValue, body: encoded)
            precondition(again == request, "request \(request) does not survive encoding")
            precondition(request.opcode.rawValue == opcode, "request \(request) decoded from opcode \(opcode)")
        }
        if let (credential, request) = try? RequestCodec.decodeWithCredential(opcode: opcode, body: body) {
            var encoded = ByteBuffer()
            RequestCodec.encode(request, credential: credential, into: &encoded)
            let again = try? RequestCodec.decodeWithCredential(opcode: opcode, body: encoded)
            precondition(again?.0 == credential && again?.1 == request, "request \(request) with \(credential) does not survive encoding")
        }
        if let result = try? ReplyCodec.decode(opcode: opcode, body: body) {
            var encoded = ByteBuffer()
            switch result {
            case .success(let reply): ReplyCodec.encode(reply, into: &encoded)
            case .failure(let code): ReplyCodec.encodeError(code, into: &encoded)
            }
            let again = try? ReplyCodec.decode(opcode: opcode, body: encoded)
            precondition(again == result, "reply \(result) does not survive encoding")
        }
        if let push = try? PushCodec.decode(opcode: opcode, body: body) {
            var encoded = ByteBuffer()
            PushCodec.encode(push, into: &encoded)
            let again = try? PushCodec.decode(opcode: opcode, body: encoded)
            precondition(again == push, "push \(push) does not survive encoding")
        }
        if let entries = try? DirectoryListingCodec.decode(body) {
            let again = try? DirectoryListingCodec.decode(DirectoryListingCodec.encode(entries))
            precondition(again == entries, "directory listing \(entries) does not survive encoding")
        }
    }
}
