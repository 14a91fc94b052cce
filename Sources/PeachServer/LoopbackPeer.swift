import Foundation
import NIOCore
import PeachProtocol

/// Who owns the other end of a loopback TCP connection, from the kernel's socket table
/// (/proc/net/tcp and tcp6, as identd reads it). A plain connection from this machine is trusted
/// for the users it claims only when root opened it: any other local user acts as itself.
enum LoopbackPeer {
    static func isLoopback(_ address: SocketAddress?) -> Bool {
        guard let ip = address?.ipAddress else { return false }
        return ip.hasPrefix("127.") || ip == "::1" || ip.hasPrefix("::ffff:127.")
    }

    /// The principal of a plain connection: a local user by the socket's owner, or an
    /// unauthenticated machine by its address. Nil when the owner cannot be known (the peer
    /// closed its socket already): the request is refused.
    static func principal(peer: SocketAddress?, local: SocketAddress?) -> Principal? {
        guard isLoopback(peer), let peer, let local else { return .unauthenticated(peer?.ipAddress ?? "-") }
        guard let uid = owner(of: peer, connectedTo: local) else { return nil }
        return uid == 0 ? .localRoot : .localUser(localIdentity(uid))
    }

    /// The principal of a plain connection, looked up when its first Hello or Admin request is
    /// handled; accessDenied when its owner cannot be known.
    static func requirePrincipal(peer: SocketAddress?, local: SocketAddress?) throws -> Principal {
        guard let principal = principal(peer: peer, local: local) else { throw StatusCode.accessDenied }
        return principal
    }

    /// The uid that opened the socket `peer` connected to `local`, while that socket is still
    /// ESTABLISHED. Once the peer has closed it, the kernel may keep only a time-wait entry,
    /// which it prints with uid 0: a closed socket is nobody's, never root's.
    static func owner(of peer: SocketAddress, connectedTo local: SocketAddress) -> uid_t? {
        let wanted = [(entry(peer, v6: false), entry(local, v6: false), "/proc/net/tcp"),
                      (entry(peer, v6: true), entry(local, v6: true), "/proc/net/tcp6")]
        for (peerEntry, localEntry, table) in wanted {
            guard let peerEntry, let localEntry, let text = readProcFile(table) else { continue }
            for line in text.split(separator: "\n").dropFirst() {
                let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                guard fields.count > 7, fields[1] == peerEntry, fields[2] == localEntry else { continue }
                return fields[3] == establishedState ? uid_t(fields[7]) : nil
            }
        }
        return nil
    }

    /// The `st` column of a connected socket (TCP_ESTABLISHED).
    static let establishedState: Substring = "01"

    /// A /proc file's text. Its size reads as 0, so it is read until the end, not by its size.
    static func readProcFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            bytes += chunk[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// How the socket table writes an address: the address's 32-bit words in host order, then
    /// the port, in upper-case hex ("0100007F:1B58" for 127.0.0.1:7000 on x86).
    static func entry(_ address: SocketAddress, v6: Bool) -> Substring? {
        guard let port = address.port else { return nil }
        var words: [UInt32]
        switch address {
        case .v4(let v4):
            if v6 {
                // An IPv4 peer of a dual-stack socket: ::ffff:a.b.c.d.
                words = [0, 0, UInt32(0xFFFF).bigEndian, v4.address.sin_addr.s_addr]
            } else {
                words = [v4.address.sin_addr.s_addr]
            }
        case .v6(let v6address):
            guard v6 else { return nil }
            var raw = v6address.address.sin6_addr
            words = withUnsafeBytes(of: &raw) { bytes in (0..<4).map { bytes.load(fromByteOffset: $0 * 4, as: UInt32.self) } }
        default:
            return nil
        }
        let hex = words.map { String(format: "%08X", $0) }.joined()
        return Substring(hex + ":" + String(format: "%04X", port))
    }

    /// A local user's identity: its uid, primary group and supplementary groups.
    static func localIdentity(_ uid: uid_t) -> Identity {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4096)
        guard getpwuid_r(uid, &entry, &buffer, buffer.count, &result) == 0, result != nil else {
            return Identity(uid: uid, gid: 65534)
        }
        var groups = [gid_t](repeating: 0, count: 64)
        var count = Int32(groups.count)
        let gid = entry.pw_gid
        if getgrouplist(entry.pw_name, gid, &groups, &count) < 0 { count = 0 }
        return Identity(uid: uid, gid: gid, groups: Array(groups.prefix(Int(max(count, 0)))))
    }
}
