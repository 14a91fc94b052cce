import Logging
import PeachProtocol
import PeachSupport
import Testing
@testable import PeachClient

/// The NFS-style client's attribute cache on its own: replies applied out of order.
@Suite("NFS-style client: the node table")
struct NFSNodeTableTests {
    func status(dataVersion: UInt64, size: UInt64) -> FileStatus {
        FileStatus(fid: FID(vnode: 5), type: .regular, mode: 0o644, uid: 0, gid: 0, size: size, linkCount: 1,
                   dataVersion: dataVersion, atime: Timespec(seconds: 1), mtime: Timespec(seconds: Int64(dataVersion)),
                   ctime: Timespec(seconds: Int64(dataVersion)))
    }

    @Test("a reply older than the status already applied (a READ that raced a truncate) does not undo it")
    func olderStatusIgnored() {
        // The core is never connected: the table only needs its statistics and notifier.
        let core = ClientCore<NFSOpenFile>(design: .nfs, server: ServerAddress("127.0.0.1:9")!, clientID: "test", epoch: 1, tls: nil,
                                           retry: .failFast, logger: Logger(label: "test"))
        var table = NFSNodeTable(core: core, options: NFSOptions())
        let fid = FID(vnode: 5)
        table.apply(status(dataVersion: 3, size: 259_849))
        table.apply(status(dataVersion: 4, size: 162_648))  // the truncate's reply
        table.apply(status(dataVersion: 3, size: 259_849))  // the READ served before it
        #expect(table[fid: fid]?.status.dataVersion == 4)
        #expect(table[fid: fid]?.status.size == 162_648)
        table.apply(status(dataVersion: 5, size: 7))        // a newer one still counts
        #expect(table[fid: fid]?.status.size == 7)
    }
}
