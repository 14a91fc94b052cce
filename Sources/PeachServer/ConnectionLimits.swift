import NIOCore
import PeachProtocol

/// What one connection may make the server hold, so that one client can only hurt itself.
/// `peach server` sets these from its flags; docs/security.md explains each.
public struct ConnectionLimits: Sendable {
    /// Connections served at once (`--max-clients`); more are closed as they arrive.
    public var maximumClients: Int
    /// Requests of one connection being worked on or waiting for their reply to be written.
    /// Past it the server stops reading from that connection (backpressure).
    public var maximumRequestsInFlight: Int
    /// Reply bytes one connection may have queued before the server stops starting its
    /// requests and stops reading from it (the channel's high write-water mark).
    public var maximumQueuedReplyBytes: Int
    /// Bytes of large frames (over 64 KiB) being received by all connections together. A
    /// connection that would pass it waits, unread, until another frame completes.
    public var maximumLargeFrameBytes: Int
    /// A frame whose first byte arrived must be complete within this time.
    public var partialFrameTimeout: TimeAmount
    /// A connection with nothing in flight and no callbacks held is closed after this long
    /// without a frame (`--idle-timeout`).
    public var idleTimeout: TimeAmount
    /// A stream of FetchData chunks that makes no progress for this long closes its connection.
    public var stalledStreamTimeout: TimeAmount
    /// A client not connected and not heard from for this long is forgotten, with its recorded
    /// replies (`VolumeStore.forgetClients`). At least a promise's life.
    public var forgetClientsAfter: TimeAmount
    /// A principal one of whose clients made a change wait (away or silent while holding a
    /// promise it broke) gets no new promises for this long (`PromiseSuspensions`).
    public var promiseSuspension: TimeAmount
    /// Client ids one principal may have in the client table. A new one past it replaces the
    /// principal's longest-silent id that is not connected and holds no promise; if there is
    /// none, its Hello is refused with `busy`.
    public var maximumClientIDsPerPrincipal: Int

    public init(maximumClients: Int = 1024, maximumRequestsInFlight: Int = 32, maximumQueuedReplyBytes: Int = 512 << 10,
                maximumLargeFrameBytes: Int = 128 << 20, partialFrameTimeout: TimeAmount = .seconds(30),
                idleTimeout: TimeAmount = .seconds(600), stalledStreamTimeout: TimeAmount = .seconds(60),
                forgetClientsAfter: TimeAmount = .hours(48), promiseSuspension: TimeAmount = .seconds(60),
                maximumClientIDsPerPrincipal: Int = 64) {
        self.maximumClients = maximumClients
        self.maximumRequestsInFlight = maximumRequestsInFlight
        self.maximumQueuedReplyBytes = maximumQueuedReplyBytes
        self.maximumLargeFrameBytes = maximumLargeFrameBytes
        self.partialFrameTimeout = partialFrameTimeout
        self.idleTimeout = idleTimeout
        self.stalledStreamTimeout = stalledStreamTimeout
        self.forgetClientsAfter = forgetClientsAfter
        self.promiseSuspension = promiseSuspension
        self.maximumClientIDsPerPrincipal = maximumClientIDsPerPrincipal
    }

    /// The largest frame body a client sends: a WRITE of one 1 MiB chunk and its header, or a
    /// data chunk. Anything larger closes the connection at its header.
    public static let maximumRequestBodySize = Frame.dataChunkSize + 4096
}
