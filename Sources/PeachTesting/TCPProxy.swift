import Foundation
import NIOConcurrencyHelpers
import PeachLocalCluster
import PeachSupport

/// A loopback TCP proxy in front of a server, for network faults a test turns on and off:
/// `holdReplies` stops forwarding from the server to the clients (a one-way partition: the
/// clients' requests and pings still arrive, nothing comes back), `release` forwards what was
/// held, in order. `holdRepliesOnly` holds replies and data but lets pushes (callback breaks)
/// through, so that a break overtakes the reply of a request in flight.
/// `dropConnection(afterForwarding:)` cuts a connection in the middle of a request. Blocking
/// sockets, two threads per connection; plain TCP (`holdRepliesOnly` reads the frames); for
/// tests only.
public final class TCPProxy: LoopbackRelay, @unchecked Sendable {
    public let port: Int
    private let target: Int
    private let listener: Int32
    private let held = NIOLockedValueBox(false)
    /// Replies and data held back while pushes go on (`holdRepliesOnly`), whole frames in order.
    private let pushesOnly = NIOLockedValueBox(false)
    private let sockets = NIOLockedValueBox<[Int32]>([])
    private let stopped = NIOLockedValueBox(false)
    /// Bytes still to forward from a client before its connection is cut (once), if armed.
    private let cutAfter = NIOLockedValueBox<Int?>(nil)

    /// Listens on a free loopback port and forwards each connection to 127.0.0.1:`targetPort`.
    public init(targetPort: Int) throws {
        target = targetPort
        (listener, port) = try LoopbackSocket.listening()
        Thread.detachNewThread { [self] in acceptLoop() }
    }

    /// Stops forwarding server → client: replies, pushes and pongs wait in the proxy's sockets.
    public func holdReplies() { held.withLockedValue { $0 = true } }

    /// Stops forwarding server → client frames other than pushes: replies, data and pongs wait,
    /// while callback breaks go on at once, ahead of the reply of any request in flight.
    public func holdRepliesOnly() { pushesOnly.withLockedValue { $0 = true } }

    /// Forwards again, everything held first.
    public func release() {
        held.withLockedValue { $0 = false }
        pushesOnly.withLockedValue { $0 = false }
    }

    /// Once `bytes` more have gone from a client to the server, closes that connection at both
    /// ends, as a network that fails in the middle of a request. Later connections are forwarded
    /// as usual.
    public func dropConnection(afterForwarding bytes: Int) { cutAfter.withLockedValue { $0 = bytes } }

    /// Stops the listener and every connection (their descriptors are closed by the threads that
    /// use them, once those return). Once only.
    public func stop() {
        let alreadyStopped = stopped.withLockedValue { stopped in
            defer { stopped = true }
            return stopped
        }
        guard !alreadyStopped else { return }
        // Shut down, not closed: the accept loop closes the listener when it returns, so that
        // no call of it can meet the number reused by another socket of this process.
        shutdown(listener, Int32(SHUT_RDWR))
        for fd in sockets.withLockedValue({ $0 }) { shutdown(fd, Int32(SHUT_RDWR)) }
    }

    deinit { stop() }

    private func acceptLoop() {
        defer { close(listener) }
        while !stopped.withLockedValue({ $0 }) {
            let client = accept(listener, nil, nil)
            guard client >= 0 else { if errno == EINTR { continue } else { return } }
            guard let server = LoopbackSocket.connected(port: target) else {
                close(client)
                continue
            }
            sockets.withLockedValue { $0 += [client, server] }
            let exits = NIOLockedValueBox(0)
            let finish: @Sendable () -> Void = { [sockets] in
                guard exits.withLockedValue({ $0 += 1; return $0 }) == 2 else { return }
                sockets.withLockedValue { $0.removeAll { $0 == client || $0 == server } }
                close(client)
                close(server)
            }
            Thread.detachNewThread { [self] in pump(from: client, to: server, holdable: false); finish() }
            Thread.detachNewThread { [self] in pump(from: server, to: client, holdable: true); finish() }
        }
    }

    private func pump(from source: Int32, to destination: Int32, holdable: Bool) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        defer {
            shutdown(destination, Int32(SHUT_RDWR))
            shutdown(source, Int32(SHUT_RDWR))
        }
        // Server → client bytes not yet forwarded: a partial frame, and frames `holdRepliesOnly` holds.
        var pending: [UInt8] = []
        var heldFrames: [[UInt8]] = []
        while true {
            let n = read(source, &buffer, buffer.count)
            guard n > 0 else { return }
            // What arrives while held waits here, and goes on in order once released.
            while holdable && held.withLockedValue({ $0 }) && !stopped.withLockedValue({ $0 }) { usleep(10_000) }
            guard holdable else {
                guard Self.writeAll(buffer[0..<n], to: destination) else { return }
                if cutNow(forwarded: n) { return }
                continue
            }
            pending += buffer[0..<n]
            while let frame = Self.takeFrame(from: &pending) {
                // A frame is `u32 length | u8 kind | …`; kind 4 is a push.
                if pushesOnly.withLockedValue({ $0 }) && frame[4] != 4 {
                    heldFrames.append(frame)
                    continue
                }
                if !pushesOnly.withLockedValue({ $0 }) {
                    for held in heldFrames { guard Self.writeAll(held[...], to: destination) else { return } }
                    heldFrames = []
                }
                guard Self.writeAll(frame[...], to: destination) else { return }
            }
            // Held frames go as soon as the hold ends, even with nothing new arriving.
            while !heldFrames.isEmpty && pushesOnly.withLockedValue({ $0 }) && !stopped.withLockedValue({ $0 }) {
                var readable = pollfd(fd: source, events: Int16(POLLIN), revents: 0)
                if poll(&readable, 1, 10) > 0 { break }
            }
            if !heldFrames.isEmpty && !pushesOnly.withLockedValue({ $0 }) {
                for held in heldFrames { guard Self.writeAll(held[...], to: destination) else { return } }
                heldFrames = []
            }
        }
    }

    /// One whole frame off the front of `bytes`, if all of it is there.
    private static func takeFrame(from bytes: inout [UInt8]) -> [UInt8]? {
        guard bytes.count >= 5 else { return nil }
        let length = bytes[0..<4].reduce(0) { $0 << 8 | Int($1) }
        guard bytes.count >= 4 + length else { return nil }
        let frame = Array(bytes[0..<(4 + length)])
        bytes.removeFirst(4 + length)
        return frame
    }

    private static func writeAll(_ bytes: ArraySlice<UInt8>, to destination: Int32) -> Bool {
        bytes.withUnsafeBytes { WholeWrite.write($0, to: destination) == nil }
    }

    /// Counts `forwarded` client bytes against an armed cut; true when the cut is due (it disarms).
    private func cutNow(forwarded: Int) -> Bool {
        cutAfter.withLockedValue { left in
            guard let remaining = left else { return false }
            if remaining > forwarded {
                left = remaining - forwarded
                return false
            }
            left = nil
            return true
        }
    }
}
