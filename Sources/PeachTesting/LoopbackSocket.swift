import Foundation
import PeachLocalCluster

/// TCP sockets on 127.0.0.1 for tests: a listener on a free (or given) port, a client connected
/// to a port, a port free to hand to a process.
public enum LoopbackSocket {
    /// Runs `body` with 127.0.0.1:`port` as a sockaddr.
    private static func withAddress<T>(port: Int, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }

    /// A socket bound to 127.0.0.1:`port` (0: any free port) and listening, and its port.
    public static func listening(port: Int = 0, backlog: Int32 = 64) throws -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0, withAddress(port: port, { bind(fd, $0, $1) }) == 0, listen(fd, backlog) == 0 else {
            if fd >= 0 { close(fd) }
            throw MountError(description: "cannot listen on 127.0.0.1:\(port): \(String(cString: strerror(errno)))")
        }
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &address) { pointer in
            _ = pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }

    /// A port no one listens on now (free to give a process; another may take it meanwhile).
    public static func freePort() throws -> Int {
        let (fd, port) = try listening()
        close(fd)
        return port
    }

    /// A socket connected to 127.0.0.1:`port`, or nil.
    public static func connected(port: Int) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        guard withAddress(port: port, { connect(fd, $0, $1) }) == 0 else {
            close(fd)
            return nil
        }
        return fd
    }
}
