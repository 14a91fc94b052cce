import CPeachSystem
import Foundation
import NIOCore
import PeachProtocol

/// A client that speaks the wire protocol by hand over a blocking socket, as an attacker's tool
/// written from docs/protocol.md would: it sends any frame, malformed or not, and reads replies
/// only when told to. Tests use it to check that no peer can crash, stall or exhaust the server.
/// Unchecked: a test hands it to one other thread at a time, never to two at once.
public final class RawProtocolClient: @unchecked Sendable {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        public init(description: String) { self.description = description }
    }

    private let fd: Int32
    private var received = ByteBuffer()
    private var nextID: UInt32 = 0
    /// The credential every request carries.
    public var credential = Credential.root

    /// Connects to `host:port` (IPv4 loopback in tests). With `owner`, the socket is opened as
    /// that local user (the thread's fsuid, briefly), so the server sees an unprivileged peer.
    public init(host: String = "127.0.0.1", port: Int, owner: uid_t? = nil) throws {
        if let owner { _ = setfsuid(owner) }
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        if owner != nil { _ = setfsuid(0) }
        guard fd >= 0 else { throw Failure(description: "socket: \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, host, &address.sin_addr)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(fd)
            throw Failure(description: "connect: \(String(cString: strerror(errno)))")
        }
    }

    deinit { close(fd) }

    /// The port this end of the connection has (the server sees it as the peer's).
    public var localPort: Int {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Closes the connection now (the descriptor stays reserved until deinit).
    public func shutdownConnection() { shutdown(fd, Int32(SHUT_RDWR)) }

    /// Sends raw bytes as they are.
    public func send(bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw Failure(description: "send: \(String(cString: strerror(errno)))") }
            offset += n
        }
    }

    public func send(_ frame: Frame) throws {
        var buffer = ByteBuffer()
        FrameEncoder.encode(frame, into: &buffer)
        try send(bytes: Array(buffer: buffer))
    }

    /// Sends a request with a fresh id and returns the id.
    @discardableResult
    public func send(_ request: Request) throws -> UInt32 {
        nextID &+= 1
        var body = ByteBuffer()
        RequestCodec.encode(request, credential: credential, into: &body)
        try send(Frame(kind: .request, id: nextID, opcode: request.opcode.rawValue, body: body))
        return nextID
    }

    /// Sends a numbered request (exactly-once, its reply recorded) and returns its frame id.
    @discardableResult
    public func send(_ request: Request, number: RequestNumber) throws -> UInt32 {
        nextID &+= 1
        var body = ByteBuffer()
        number.write(into: &body)
        RequestCodec.encode(request, credential: credential, into: &body)
        try send(Frame(kind: .request, flags: Frame.flagNumbered, id: nextID, opcode: request.opcode.rawValue, body: body))
        return nextID
    }

    /// Sends a request whose body (credential and message) is given as raw bytes, to send what
    /// the codec would never write.
    @discardableResult
    public func send(opcode: Opcode, body: [UInt8]) throws -> UInt32 {
        nextID &+= 1
        try send(Frame(kind: .request, id: nextID, opcode: opcode.rawValue, body: ByteBuffer(bytes: body)))
        return nextID
    }

    /// The next frame, or nil when the server closed the connection. Throws after `timeout`.
    public func receiveFrame(timeout: Double = 10) throws -> Frame? {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if let frame = try FrameDecoder.decodeFrame(from: &received) { return frame }
            let remaining = deadline.timeIntervalSinceNow
            guard remaining > 0 else { throw Failure(description: "no frame within \(timeout) s") }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, Int32(remaining * 1000) + 1) > 0 else { continue }
            var chunk = [UInt8](repeating: 0, count: 1 << 16)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return nil }
            received.writeBytes(chunk[0..<n])
        }
    }

    /// The reply to request `id`, skipping pushes (acknowledged) and data frames.
    public func reply(to id: UInt32, timeout: Double = 10) throws -> Result<Reply, StatusCode>? {
        while let frame = try receiveFrame(timeout: timeout) {
            switch frame.kind {
            case .reply where frame.id == id:
                return try ReplyCodec.decode(opcode: frame.opcode, body: frame.body)
            case .push:
                try send(Frame(kind: .pushAck, id: frame.id, opcode: frame.opcode, body: ByteBuffer()))
            default:
                continue
            }
        }
        return nil
    }

    /// Says Hello as a new client and returns the reply.
    @discardableResult
    public func hello(clientID: String = UUID().uuidString, design: ClientDesign = .afs) throws -> Result<Reply, StatusCode>? {
        let id = try send(.hello(Hello(clientID: clientID, epoch: 1, design: design)))
        return try reply(to: id)
    }

    /// Pings every `interval` for `duration` seconds, reading each answer, as an idle mount
    /// does; true if the server closed the connection meanwhile.
    public func keepPinging(for duration: Double, every interval: Double = 0.1) -> Bool {
        let deadline = Date().addingTimeInterval(duration)
        while deadline.timeIntervalSinceNow > 0 {
            do {
                let id = try send(.ping)
                if try reply(to: id, timeout: 5) == nil { return true }
            } catch {
                return true  // a send on a closed socket
            }
            Thread.sleep(forTimeInterval: interval)
        }
        return false
    }

    /// True when the server closed this connection within `timeout`.
    public func isClosedByServer(within timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while deadline.timeIntervalSinceNow > 0 {
            do {
                if try receiveFrame(timeout: deadline.timeIntervalSinceNow) == nil { return true }
            } catch {
                return false
            }
        }
        return false
    }
}
