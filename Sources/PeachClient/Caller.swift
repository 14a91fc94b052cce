import Foundation
import PeachProtocol

/// The process a request is being served for, on the thread serving it.
///
/// The FUSE adapter serves each kernel request on one thread, synchronously, and every server
/// request the cache manager sends for it is encoded on that thread. So the adapter names the
/// caller here for the duration of the request, and `ServerConnection` puts the caller's
/// credential on every request it sends, as the kernel's `current` names the task. The
/// credential is made only when a request actually goes to the server (reading supplementary
/// groups costs a /proc read), and work with no caller (unmount, recovery) names one itself.
public enum Caller {
    /// Makes the caller's credential when it is first needed.
    public typealias CredentialSource = () -> Credential

    private final class Slot {
        var userID: UInt32?
        var source: CredentialSource?
        var credential: Credential?
        var interrupted: (() -> Bool)?
    }

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key) { pointer in if let pointer { Unmanaged<AnyObject>.fromOpaque(pointer).release() } }
        return key
    }()

    private static var slot: Slot {
        if let pointer = pthread_getspecific(key) {
            return Unmanaged<Slot>.fromOpaque(pointer).takeUnretainedValue()
        }
        let slot = Slot()
        pthread_setspecific(key, Unmanaged.passRetained(slot).toOpaque())
        return slot
    }

    /// Runs `body` on behalf of the caller that `source` describes; `interrupted` says whether
    /// the caller gave up on the request (a signal: FUSE's INTERRUPT).
    /// `userID`, when given, is the caller's uid without the cost of its credential.
    public static func serving<T>(_ source: @escaping CredentialSource, userID: UInt32? = nil, interrupted: (() -> Bool)? = nil,
                                  _ body: () throws -> T) rethrows -> T {
        let slot = self.slot
        let saved = (slot.source, slot.credential, slot.interrupted, slot.userID)
        slot.source = source
        slot.credential = nil
        slot.interrupted = interrupted
        slot.userID = userID
        defer { (slot.source, slot.credential, slot.interrupted, slot.userID) = saved }
        return try body()
    }

    /// The caller's uid (root's when no caller is named).
    public static var userID: UInt32 { slot.userID ?? credential.uid }

    /// Whether the caller served on this thread was interrupted (a request waiting for an
    /// unreachable server then gives up with EINTR).
    static var isInterrupted: Bool { slot.interrupted?() ?? false }

    /// Runs `body` for `credential` unless a caller is already named on this thread (a store
    /// made at close belongs to the closing process; one made at unmount, to the file's owner).
    public static func unlessNamed<T>(_ credential: Credential, _ body: () throws -> T) rethrows -> T {
        if slot.source != nil { return try body() }
        return try serving({ credential }, body)
    }

    /// The credential for a request sent now: the named caller's, or root's (the cache manager's
    /// own requests: Hello, revalidation at start-up, giving up callbacks).
    public static var credential: Credential {
        let slot = self.slot
        if let credential = slot.credential { return credential }
        guard let source = slot.source else { return .root }
        let credential = source()
        slot.credential = credential
        return credential
    }
}
