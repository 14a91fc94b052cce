import PeachProtocol

/// When the server makes a change durable before it replies: `peach server --sync`, after
/// OpenAFS's fileserver option of the same name. docs/consistency.md states each guarantee.
public enum SyncPolicy: String, Sendable, CaseIterable {
    /// Every change (namespace, status, store, NFS COMMIT) is on disk before its reply.
    case always
    /// A StoreData (close) and an NFS COMMIT are on disk before their reply; other changes
    /// within 100 ms.
    case onclose
    /// Nothing waits for the disk: changes reach it in groups at most 100 ms later. A server
    /// process crash loses nothing (the kernel holds the data); a power loss may lose the last 100 ms.
    case delayed

    /// Whether the reply to `request` waits until its changes are on disk.
    func syncsBeforeReply(_ request: Request) -> Bool {
        switch (self, request) {
        case (.delayed, _): false
        case (_, .storeData), (_, .commit): true
        case (.onclose, _): false
        case (.always, _): request.isChange
        }
    }

    /// Whether an upload's data is fsynced before it becomes the file's content.
    var syncsUploads: Bool { self != .delayed }
}
