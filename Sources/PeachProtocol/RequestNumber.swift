import NIOCore

/// The number a client gives a request that must not be carried out twice (create, remove,
/// rename, link, a conditional store), so that it can retry it after losing the connection. The
/// server records the reply of each numbered request in the transaction of its change and
/// answers a repeat with the recorded reply (docs/recovery.md).
///
/// On the wire it comes first in the body of a request frame with `Frame.flagNumbered`:
///     u64 sequence | u64 settledBelow
public struct RequestNumber: Hashable, Sendable {
    /// Counts up from 1 for each client (a restarted client, with a new epoch, starts again).
    public var sequence: UInt64
    /// The client will never repeat a request numbered below this: the server forgets those.
    public var settledBelow: UInt64

    public init(sequence: UInt64, settledBelow: UInt64) {
        self.sequence = sequence
        self.settledBelow = settledBelow
    }

    public func write(into buffer: inout ByteBuffer) {
        buffer.writeInteger(sequence)
        buffer.writeInteger(settledBelow)
    }

    public static func read(from buffer: inout ByteBuffer) throws -> RequestNumber {
        let number = RequestNumber(sequence: try buffer.readOrThrow(UInt64.self, "sequence"),
                                   settledBelow: try buffer.readOrThrow(UInt64.self, "settled below"))
        guard number.sequence > 0, number.settledBelow <= number.sequence else {
            throw ProtocolError.invalidValue("request number \(number.sequence), settled below \(number.settledBelow)")
        }
        return number
    }
}
