/// A file server's address, written HOST:PORT on the command line.
public struct ServerAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses "HOST:PORT", "[IPv6]:PORT" or "HOST" (port 7000). Port 0 means "any free port" to a listener.
    public init?(_ text: String, defaultPort: Int = 7000) {
        var hostPart = Substring(text)
        var port = defaultPort
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            hostPart = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":"), let p = Int(rest.dropFirst()) else { return nil }
                port = p
            }
        } else if let colon = text.lastIndex(of: ":") {
            guard let p = Int(text[text.index(after: colon)...]) else { return nil }
            hostPart = text[..<colon]
            port = p
        }
        guard !hostPart.isEmpty, (0...65535).contains(port) else { return nil }
        host = String(hostPart)
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
