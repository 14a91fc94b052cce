import Foundation
import NIOConcurrencyHelpers

/// A loopback TCP proxy in front of a server, for network faults a test turns on and off:
/// `holdReplies` stops forwarding from the server to the clients (a one-way partition: the
/// clients' requests and pings still arrive, nothing comes back), `release` forwards what was
/// held, in order. `dropConnection(afterForwarding:)` cuts a connection in the middle of a
/// request. Blocking sockets, two threads per connection; for tests only.
public final class TCPProxy: @unchecked Sendable {
    public let port: Int
    private let target: Int
    private let listener: Int32
    private let held = NIOLockedValueBox(false)
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

    /// Forwards again, everything held first.
    public func release() { held.withLockedValue { $0 = false } }

    /// Once `bytes` more have gone from a client to the server, closes that connection at both
    /// ends, as a network that fails in the middle of a request. Later connections are forwarded
    /// as usual.
    public func dropConnection(afterForwarding bytes: Int) { cutAfter.withLockedValue { $0 = bytes } }

    /// Closes the listener and every connection.
    public func stop() {
        stopped.withLockedValue { $0 = true }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        for fd in sockets.withLockedValue({ $0 }) { shutdown(fd, Int32(SHUT_RDWR)) }
    }

    deinit { stop() }

    private func acceptLoop() {
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
        while true {
            let n = read(source, &buffer, buffer.count)
            guard n > 0 else { return }
            // What arrives while held waits here, and goes on in order once released.
            while holdable && held.withLockedValue({ $0 }) && !stopped.withLockedValue({ $0 }) { usleep(10_000) }
            var sent = 0
            while sent < n {
                let m = buffer.withUnsafeBytes { write(destination, $0.baseAddress! + sent, n - sent) }
                guard m > 0 else { return }
                sent += m
            }
            if !holdable && cutNow(forwarded: n) { return }
        }
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
