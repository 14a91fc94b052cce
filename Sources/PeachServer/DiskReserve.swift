import Glibc
import PeachProtocol
import Synchronization

/// Room kept free on the server's disk for metadata. File content (StoreData, WRITE, a size
/// change) may not take the last of it, so that when content has filled the disk, removing
/// files, renaming and every SQLite commit still work, as ext4 keeps blocks for root. When
/// something else fills the disk to the last byte, every change fails with noSpace (ENOSPC).
struct DiskReserve: Sendable {
    let directory: String
    /// Bytes announced by uploads still being received: not on the disk yet, but promised.
    private let pending = Pending()

    private final class Pending: Sendable {
        let bytes = Mutex<UInt64>(0)
    }

    init(directory: String) {
        self.directory = directory
    }

    /// min(16 MiB, 2% of the file system).
    static let fraction: UInt64 = 50
    static let maximum: UInt64 = 16 << 20

    /// noSpace unless `growth` more bytes of content leave the reserve free, counting the
    /// uploads announced and not yet written.
    func check(growth: UInt64) throws {
        guard growth > 0 else { return }
        try check(growth: growth, pending: pending.bytes.withLock { $0 })
    }

    /// As `check`, and holds `bytes` for an upload until `release`: twenty concurrent 40 MB
    /// announcements each passed the check alone and together filled the disk.
    func reserve(_ bytes: UInt64) throws {
        guard bytes > 0 else { return }
        try pending.bytes.withLock { held in
            try check(growth: bytes, pending: held)
            held += bytes
        }
    }

    /// The upload is on the disk now (statvfs counts it), or will never be.
    func release(_ bytes: UInt64) {
        guard bytes > 0 else { return }
        pending.bytes.withLock { $0 -= min($0, bytes) }
    }

    private func check(growth: UInt64, pending: UInt64) throws {
        var st = statvfs()
        guard statvfs(directory, &st) == 0 else { throw StatusCode.ioError }
        let unit = UInt64(st.f_frsize)
        let free = UInt64(st.f_bavail).multipliedReportingOverflow(by: unit).partialValue
        let reserve = min(Self.maximum, UInt64(st.f_blocks) * unit / Self.fraction)
        let needed = reserve.addingReportingOverflow(pending).partialValue
        guard free >= needed, free - needed >= growth else { throw StatusCode.noSpace }
    }
}
