import PeachProtocol

/// The result of a change to the volume: what to reply, and the promises it broke.
///
/// The breaks are collected and deleted in the same transaction as the change; the network
/// front sends them after the commit and replies only once they are acknowledged.
public struct Mutation<Value: Sendable>: Sendable {
    public var value: Value
    /// Client id → FIDs whose callbacks the change broke.
    public var breaks: [String: [FID]]
    public var reason: CallBackReason
    public var callBackExpiry: UInt64
}

extension Mutation where Value == FileStatus {
    /// StatusReply.
    var reply: Reply { .status(value, callBackExpiry: callBackExpiry) }
}

extension Mutation where Value == NamespaceChange {
    /// NamespaceReply.
    var reply: Reply { .namespace(value, callBackExpiry: callBackExpiry) }
}
