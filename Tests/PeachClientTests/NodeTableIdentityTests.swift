import Logging
import PeachProtocol
import PeachSupport
import Testing
@testable import PeachClient

/// Both designs' tables own their nodes as values, by inode, and the open files name theirs by
/// FID. When the server answers with a new uniquifier for a vnode number (a restored volume
/// reuses it), the kernel's inode moves to the new FID, and the node still open keeps its state
/// for its descriptors until the last close.
@Suite("Node tables: a vnode number reused while a file is open")
struct NodeTableIdentityTests {
    static let old = FID(vnode: 7, unique: 100)
    static let new = FID(vnode: 7, unique: 200)

    func status(_ fid: FID, dataVersion: UInt64 = 1, size: UInt64 = 10) -> FileStatus {
        FileStatus(fid: fid, type: .regular, mode: 0o644, uid: 0, gid: 0, size: size, linkCount: 1,
                   dataVersion: dataVersion, atime: Timespec(seconds: 1), mtime: Timespec(seconds: 1), ctime: Timespec(seconds: 1))
    }

    static func core<Handle: Sendable>(_ design: ClientDesign, _: Handle.Type) -> ClientCore<Handle> {
        // Never connected: the tables need only its statistics, lease view and notifier.
        ClientCore<Handle>(design: design, server: ServerAddress("127.0.0.1:9")!, clientID: "test", epoch: 1, tls: nil,
                           retry: .failFast, logger: Logger(label: "test"))
    }

    /// An AFS-mode table on a real disk cache in a temporary directory.
    func withAFSTable(_ body: (DiskCache, inout CachedVnodeTable) throws -> Void) throws {
        let directory = try TemporaryDirectory(prefix: "peach-identity")
        defer { directory.remove() }
        let core = Self.core(.afs, OpenFile.self)
        let disk = try DiskCache(directory: directory.path, sizeLimit: 1 << 20)
        var table = CachedVnodeTable(lease: core.lease, disk: disk, statistics: core.statistics, offlineReads: false)
        try body(disk, &table)
    }

    @Test("AFS mode: the open vnode keeps its state by FID and goes at its last close")
    func afsTable() throws {
        try withAFSTable { _, table in
            let stamp = table.stamp()
            table.install(status(Self.old, size: 10), expiry: 0, stamp: stamp)
            try table.updateKnown(Self.old) { $0.openCount += 1 }

            table.install(status(Self.new, size: 99), expiry: 0, stamp: stamp)
            #expect(table.vnodes[7]?.fid == Self.new, "the kernel's inode names the new file")
            #expect(table[fid: Self.old]?.status.size == 10, "the open file's vnode is still there, unchanged")
            #expect(table[fid: Self.old]?.openCount == 1)
            table.install(status(Self.old, dataVersion: 2, size: 11), expiry: 0, stamp: stamp)
            #expect(table[fid: Self.old]?.status.size == 11, "a status of the old FID reaches the open vnode")
            #expect(table.vnodes[7]?.fid == Self.new, "and does not take the inode back")

            #expect(table.closed(Self.old) == false)
            #expect(table[fid: Self.old] == nil, "the last close lets it go")
            #expect(table[fid: Self.new]?.status.size == 99)
        }
    }

    @Test("AFS mode: a dirty vnode that loses its inode stays until it is stored")
    func afsDirtyVnode() throws {
        try withAFSTable { disk, table in
            let stamp = table.stamp()
            table.install(status(Self.old), expiry: 0, stamp: stamp)
            try disk.install(.init(fid: Self.old, dataVersion: 1, size: 10, dirty: true, lastUse: 0))  // closed, not stored yet

            table.install(status(Self.new), expiry: 0, stamp: stamp)
            #expect(table[fid: Self.old] != nil, "a store behind the close, fs sync or unmount still finds it")
            #expect(table.allVnodes.filter { table.isDirty($0.fid) }.map(\.fid) == [Self.old])
            table.stored(Self.old)
            #expect(table[fid: Self.old] != nil, "still dirty: it stays")
            disk.remove(Self.old)
            table.stored(Self.old)
            #expect(table[fid: Self.old] == nil, "clean and closed: it goes")
        }
    }

    @Test("NFS mode: the open node keeps its dirty blocks by FID and goes once closed and written back")
    func nfsTable() throws {
        var table = NFSNodeTable(core: Self.core(.nfs, NFSOpenFile.self), options: NFSOptions())
        table.apply(status(Self.old, size: 10))
        try table.updateKnown(Self.old) { node in
            node.openCount += 1
            node.dirtyBlocks[0] = DirtyBlock(data: [1, 2, 3], dirtyStart: 0, dirtyEnd: 3)
        }

        table.apply(status(Self.new, size: 99))
        #expect(table.nodes[7]?.fid == Self.new)
        #expect(table[fid: Self.old]?.dirtyBlocks[0]?.data == [1, 2, 3], "the open file's unsent writes are kept")
        #expect(table.allNodes.count == 2, "a sync or unmount still finds them")

        table.closed(Self.old)
        #expect(table[fid: Self.old] != nil, "closed with unsent writes: kept until they are sent")
        try table.updateKnown(Self.old) { $0.dirtyBlocks = [:] }
        table.writtenBack(Self.old)
        #expect(table[fid: Self.old] == nil)
        #expect(table.allNodes.map(\.fid) == [Self.new])
    }
}
