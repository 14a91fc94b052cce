import Glibc
import PeachProtocol

/// Room kept free on the server's disk for metadata. File content (StoreData, WRITE, a size
/// change) may not take the last of it, so that when content has filled the disk, removing
/// files, renaming and every SQLite commit still work, as ext4 keeps blocks for root. When
/// something else fills the disk to the last byte, every change fails with noSpace (ENOSPC).
struct DiskReserve: Sendable {
    let directory: String

    /// min(16 MiB, 2% of the file system).
    static let fraction: UInt64 = 50
    static let maximum: UInt64 = 16 << 20

    /// noSpace unless `growth` more bytes of content leave the reserve free.
    func check(growth: UInt64) throws {
        guard growth > 0 else { return }
        var st = statvfs()
        guard statvfs(directory, &st) == 0 else { throw StatusCode.ioError }
        let unit = UInt64(st.f_frsize)
        let free = UInt64(st.f_bavail).multipliedReportingOverflow(by: unit).partialValue
        let reserve = min(Self.maximum, UInt64(st.f_blocks) * unit / Self.fraction)
        guard free >= reserve, free - reserve >= growth else { throw StatusCode.noSpace }
    }
}
