import NIOCore
import PeachProtocol

/// The server's frame decoder: the protocol's `FrameDecoder` with the limits a server needs
/// against its peers. Frames larger than a request can be close the connection at their header;
/// a large frame takes a share of the shared `InboundMemoryBudget` before it is buffered; and a
/// frame begun must be finished within the partial-frame timeout.
struct ServerFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = Frame

    /// Sent down the pipeline when the budget is spent: `ConnectionHandler` stops reading until
    /// the budget frees up.
    struct WaitForMemory: Sendable {
        let budget: InboundMemoryBudget
        let owner: String
    }

    /// What a connection may buffer of a large frame that has no share of the budget: two
    /// reads' worth (the server reads one chunk of at most 64 KiB per event, `maxMessagesPerRead` 1).
    static let unbudgetedLimit = 128 << 10

    private let budget: InboundMemoryBudget
    private let owner: FrameOwner
    private let reservation: FrameReservation
    private let partialFrameTimeout: TimeAmount
    private var partialFrameTimer: Scheduled<Void>?

    init(budget: InboundMemoryBudget, owner: FrameOwner, partialFrameTimeout: TimeAmount) {
        self.budget = budget
        self.owner = owner
        self.reservation = FrameReservation(budget: budget, owner: owner)
        self.partialFrameTimeout = partialFrameTimeout
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) {
            let bodyLength = Int(length) - (Frame.headerSize - 4)
            guard bodyLength <= ConnectionLimits.maximumRequestBodySize else { throw ProtocolError.frameTooLarge(bodyLength) }
            let frameSize = 4 + Int(length)
            if buffer.readableBytes < frameSize, frameSize > InboundMemoryBudget.smallFrameSize, reservation.bytes == 0,
               !reservation.take(frameSize) {
                // Reading stops until the budget frees up; what one read cycle already brought is
                // kept. More than that means the bytes came anyway (a peer that closed: NIO drains
                // its socket): they are not buffered, the connection goes.
                guard buffer.readableBytes <= Self.unbudgetedLimit else {
                    throw ProtocolError.invalidValue("frame of \(bodyLength) bytes over the server's memory budget")
                }
                cancelPartialFrameTimer()
                context.fireUserInboundEventTriggered(WaitForMemory(budget: budget, owner: owner.current))
                return .needMoreData
            }
        }
        guard let frame = try FrameDecoder.decodeFrame(from: &buffer) else {
            if buffer.readableBytes > 0 { startPartialFrameTimer(context: context) }
            return .needMoreData
        }
        reservation.giveBack()
        cancelPartialFrameTimer()
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        cancelPartialFrameTimer()
        reservation.giveBack()
        return try decode(context: context, buffer: &buffer)
    }

    private mutating func startPartialFrameTimer(context: ChannelHandlerContext) {
        guard partialFrameTimer == nil else { return }
        let channel = context.channel
        partialFrameTimer = context.eventLoop.scheduleTask(in: partialFrameTimeout) {
            channel.pipeline.fireErrorCaught(ProtocolError.truncated("frame not completed in time"))
        }
    }

    private mutating func cancelPartialFrameTimer() {
        partialFrameTimer?.cancel()
        partialFrameTimer = nil
    }
}
