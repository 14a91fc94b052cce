import CFuse3
import Glibc
import PeachClient
import PeachProtocol

extension FileType {
    /// The S_IFMT bits of st_mode.
    var modeBits: mode_t {
        switch self {
        case .regular: S_IFREG
        case .directory: S_IFDIR
        case .symlink: S_IFLNK
        case .fifo: S_IFIFO
        case .socket: S_IFSOCK
        case .characterDevice: S_IFCHR
        case .blockDevice: S_IFBLK
        }
    }

    init?(modeBits mode: mode_t) {
        switch mode & S_IFMT {
        case S_IFREG: self = .regular
        case S_IFDIR: self = .directory
        case S_IFLNK: self = .symlink
        case S_IFIFO: self = .fifo
        case S_IFSOCK: self = .socket
        case S_IFCHR: self = .characterDevice
        case S_IFBLK: self = .blockDevice
        default: return nil
        }
    }
}

extension Timespec {
    var cValue: timespec { timespec(tv_sec: Int(seconds), tv_nsec: Int(nanoseconds)) }
    init(_ t: timespec) { self.init(seconds: Int64(t.tv_sec), nanoseconds: UInt32(t.tv_nsec)) }
}

extension stat {
    init(_ status: FileStatus) {
        self.init()
        st_ino = UInt(status.fid.vnode)
        st_mode = status.type.modeBits | mode_t(status.mode & 0o7777)
        st_nlink = UInt(status.linkCount)
        st_uid = status.uid
        st_gid = status.gid
        st_size = Int(status.size)
        st_blksize = 4096
        st_blocks = Int((status.size + 511) / 512)
        st_rdev = UInt(status.rdev)
        st_atim = status.atime.cValue
        st_mtim = status.mtime.cValue
        st_ctim = status.ctime.cValue
    }
}

extension fuse_entry_param {
    init(_ entry: Entry) {
        self.init()
        ino = entry.inode
        generation = UInt64(entry.attributes.status.fid.unique)
        attr = stat(entry.attributes.status)
        attr_timeout = entry.attributes.timeout
        entry_timeout = entry.entryTimeout
    }
}
