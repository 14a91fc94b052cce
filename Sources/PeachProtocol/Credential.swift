import NIOCore

/// Who a request is for: the calling process's fsuid, fsgid and supplementary groups, as NFS's
/// AUTH_SYS carries them. Every request body starts with one. The server believes it only as far
/// as the connection is trusted (docs/security.md): an authenticated machine may act as its
/// users, with root squashed unless the machine is listed.
public struct Credential: Hashable, Sendable {
    /// At most this many supplementary groups travel (NFS's AUTH_SYS carries 16).
    public static let maximumGroups = 32

    public var uid: UInt32
    public var gid: UInt32
    public var groups: [UInt32]

    public init(uid: UInt32, gid: UInt32, groups: [UInt32] = []) {
        self.uid = uid
        self.gid = gid
        self.groups = Array(groups.prefix(Self.maximumGroups))
    }

    public static let root = Credential(uid: 0, gid: 0)

    ///     u32 uid | u32 gid | u8 count | count × u32 group
    public func write(into buffer: inout ByteBuffer) {
        buffer.writeInteger(uid)
        buffer.writeInteger(gid)
        buffer.writeInteger(UInt8(groups.count))
        for group in groups { buffer.writeInteger(group) }
    }

    public static func read(from buffer: inout ByteBuffer) throws -> Credential {
        let uid = try buffer.readOrThrow(UInt32.self, "credential")
        let gid = try buffer.readOrThrow(UInt32.self, "credential")
        let count = try buffer.readOrThrow(UInt8.self, "credential")
        guard Int(count) <= maximumGroups else { throw ProtocolError.invalidValue("credential with \(count) groups") }
        let groups = try (0..<count).map { _ in try buffer.readOrThrow(UInt32.self, "credential") }
        return Credential(uid: uid, gid: gid, groups: groups)
    }
}

extension RequestCodec {
    /// A request frame's body: the credential, then the message.
    public static func encode(_ request: Request, credential: Credential, into buffer: inout ByteBuffer) {
        credential.write(into: &buffer)
        encode(request, into: &buffer)
    }

    public static func decodeWithCredential(opcode: UInt16, body: ByteBuffer) throws -> (Credential, Request) {
        var body = body
        let credential = try Credential.read(from: &body)
        return (credential, try decode(opcode: opcode, body: body))
    }

    /// A request frame's body: its number if `flags` has `Frame.flagNumbered`, the credential,
    /// then the message.
    public static func decode(_ frame: Frame) throws -> (RequestNumber?, Credential, Request) {
        var body = frame.body
        let number = frame.flags & Frame.flagNumbered != 0 ? try RequestNumber.read(from: &body) : nil
        let (credential, request) = try decodeWithCredential(opcode: frame.opcode, body: body)
        return (number, credential, request)
    }
}
