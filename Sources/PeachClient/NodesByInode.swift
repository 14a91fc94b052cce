import PeachProtocol

/// What both designs' nodes have: the FID they stand for.
protocol FIDNamed {
    var fid: FID { get }
}

extension CachedVnode: FIDNamed {}
extension NFSNode: FIDNamed {}

/// A design's nodes, as its table owns them: by inode where the kernel reaches them, and by FID
/// those whose inode now names another FID (the server answered with a new uniquifier for the
/// vnode number, as after a restore) while an open file or unsaved change still holds them.
struct NodesByInode<Node: FIDNamed> {
    /// The nodes the kernel can reach, by inode.
    var byInode: [Inode: Node] = [:]
    /// Nodes that lost their inode and are still held.
    var detached: [FID: Node] = [:]

    /// The node of `fid`, where the kernel reaches it or where its open files do.
    subscript(fid fid: FID) -> Node? {
        if let node = byInode[fid.vnode], node.fid == fid { return node }
        return detached[fid]
    }

    /// Changes the node of `fid` in place; nil if none is known.
    mutating func update<R>(_ fid: FID, _ change: (inout Node) throws -> R) rethrows -> R? {
        if byInode[fid.vnode]?.fid == fid { return try change(&byInode[fid.vnode]!) }
        if detached[fid] != nil { return try change(&detached[fid]!) }
        return nil
    }

    /// The node of `fid`; ESTALE if none is known.
    func known(_ fid: FID) throws -> Node {
        guard let node = self[fid: fid] else { throw FileSystemError.stale }
        return node
    }

    /// As `update`, for one that must be known: ESTALE if not.
    mutating func updateKnown<R>(_ fid: FID, _ change: (inout Node) throws -> R) throws -> R {
        guard let result = try update(fid, change) else { throw FileSystemError.stale }
        return result
    }

    /// `node` takes its inode; the node that had it stays, detached, if `stillHeld` says so.
    mutating func place(_ node: Node, keepingReplacedIf stillHeld: (Node) -> Bool) {
        if let replaced = byInode[node.fid.vnode], replaced.fid != node.fid, stillHeld(replaced) { detached[replaced.fid] = replaced }
        byInode[node.fid.vnode] = node
    }

    /// Every node: those the kernel reaches and those only open files or unsaved changes hold.
    var all: [Node] { Array(byInode.values) + Array(detached.values) }
}
