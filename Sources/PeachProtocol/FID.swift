/// A file identifier: stable across renames and never reused for a different file.
///
/// As in AFS-3, a FID names a volume, a vnode inside it and a uniquifier. PeachFS serves one
/// volume; vnode numbers come from an AUTOINCREMENT column so they are never reused, and the
/// client derives its inode numbers from them.
public struct FID: Hashable, Sendable, CustomStringConvertible {
    public var volume: UInt32
    public var vnode: UInt64
    public var unique: UInt32

    public init(volume: UInt32 = 1, vnode: UInt64, unique: UInt32 = 1) {
        self.volume = volume
        self.vnode = vnode
        self.unique = unique
    }

    /// The root directory of the volume. Its vnode is 1, which is also FUSE's root inode.
    public static let root = FID(volume: 1, vnode: 1, unique: 1)

    public var description: String { "\(volume).\(vnode).\(unique)" }
}
