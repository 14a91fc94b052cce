import CFuse3
import CPeachSystem
import Foundation
import PeachClient
import PeachProtocol

/// Runs one request: `body` sends the reply; an error becomes fuse_reply_err with its errno.
/// Every request gets exactly one reply.
@inline(__always)
func serve(_ request: fuse_req_t?, _ body: (FUSEFileSystem) throws -> Void) {
    let fs = FUSEFileSystem.from(request)
    do {
        // The credential is made only when a server request needs it, from `CredentialCache`.
        try Caller.serving({ fs.credentials.credential(request) }, userID: fuse_req_ctx(request)?.pointee.uid,
                           interrupted: { fuse_req_interrupted(request) != 0 }) { try body(fs) }
    } catch let error as FileSystemError {
        if error.errno == EIO { fs.logger.debug("request failed", metadata: ["error": "\(error)"]) }
        fuse_reply_err(request, error.errno)
    } catch {
        fs.logger.warning("request failed", metadata: ["error": "\(error)"])
        fuse_reply_err(request, EIO)
    }
}

func name(_ pointer: UnsafePointer<CChar>?) -> String {
    pointer.map { String(cString: $0) } ?? ""
}

func context(_ request: fuse_req_t?) -> RequestContext {
    guard let ctx = fuse_req_ctx(request)?.pointee else { return .root }
    return RequestContext(uid: ctx.uid, gid: ctx.gid, umask: UInt32(ctx.umask))
}

func replyEntry(_ request: fuse_req_t?, _ entry: Entry) {
    var parameters = fuse_entry_param(entry)
    fuse_reply_entry(request, &parameters)
}

func replyAttributes(_ request: fuse_req_t?, _ attributes: Attributes) {
    var attr = stat(attributes.status)
    fuse_reply_attr(request, &attr, attributes.timeout)
}

/// The cache manager's handle of the open file a request is about.
func openHandle(_ info: UnsafeMutablePointer<fuse_file_info>?) throws -> UInt64 {
    guard let handle = info?.pointee.fh else { throw FileSystemError.badHandle }
    return handle
}

func apply(_ reply: OpenReply, to info: UnsafeMutablePointer<fuse_file_info>?) {
    info?.pointee.fh = reply.handle
    info?.pointee.keep_cache = reply.keepCache ? 1 : 0
    info?.pointee.direct_io = reply.directIO ? 1 : 0
    info?.pointee.noflush = reply.noFlush ? 1 : 0
}

/// The low-level operations table, a plain list of the handlers below (as libfuse's
/// passthrough_ll names its own). The handlers capture nothing; the file system comes from the
/// session's userdata.
let peachOperations: fuse_lowlevel_ops = {
    var ops = fuse_lowlevel_ops()
    ops.`init` = initialize
    ops.lookup = lookup
    ops.forget = forget
    ops.getattr = getattr
    ops.setattr = setattr
    ops.readlink = readlink
    ops.mknod = mknod
    ops.mkdir = mkdir
    ops.unlink = unlink
    ops.rmdir = rmdir
    ops.symlink = symlink
    ops.rename = rename
    ops.link = link
    ops.open = open
    ops.create = create
    ops.read = read
    ops.write = write
    ops.flush = flush
    ops.release = release
    ops.fsync = fsync
    ops.opendir = opendir
    ops.readdir = readdir
    ops.releasedir = releasedir
    ops.fsyncdir = fsyncdir
    ops.statfs = statfs
    ops.getxattr = getxattr
    ops.setxattr = setxattr
    ops.listxattr = listxattr
    ops.removexattr = removexattr
    return ops
}()

/// Asks the kernel for what the cache manager relies on, and turns its write-back cache off.
private func initialize(_: UnsafeMutableRawPointer?, connection: UnsafeMutablePointer<fuse_conn_info>?) {
    guard let connection else { return }
    // O_TRUNC arrives with open, so a truncating open needs no fetch.
    if connection.pointee.capable & UInt32(FUSE_CAP_ATOMIC_O_TRUNC) != 0 {
        connection.pointee.want |= UInt32(FUSE_CAP_ATOMIC_O_TRUNC)
    }
    connection.pointee.want &= ~UInt32(FUSE_CAP_WRITEBACK_CACHE)
    // A write by someone other than root takes set-id bits away in the cache manager (and on
    // the server): the kernel's own way, a chmod as the writer, is refused to a non-owner.
    if connection.pointee.capable & UInt32(FUSE_CAP_HANDLE_KILLPRIV) != 0 {
        connection.pointee.want |= UInt32(FUSE_CAP_HANDLE_KILLPRIV)
    }
    // Reads check the attributes when they have expired or were invalidated, and drop pages
    // whose file changed size or mtime.
    if connection.pointee.capable & UInt32(FUSE_CAP_AUTO_INVAL_DATA) != 0 {
        connection.pointee.want |= UInt32(FUSE_CAP_AUTO_INVAL_DATA)
    }
}

/// A name in a directory: its entry, with attribute and entry timeouts.
private func lookup(request: fuse_req_t?, parent: fuse_ino_t, rawName: UnsafePointer<CChar>?) {
    serve(request) { fs in replyEntry(request, try fs.cacheManager.lookup(parent: parent, name: name(rawName))) }
}

/// The kernel dropped `count` references to an inode.
private func forget(request: fuse_req_t?, inode: fuse_ino_t, count: UInt64) {
    FUSEFileSystem.from(request).cacheManager.forget(inode, count: count)
    fuse_reply_none(request)
}

/// An inode's attributes.
private func getattr(request: fuse_req_t?, inode: fuse_ino_t, info: UnsafeMutablePointer<fuse_file_info>?) {
    serve(request) { fs in
        replyAttributes(request, try fs.cacheManager.getAttributes(inode, handle: info?.pointee.fh))
    }
}

/// chmod, chown, truncate, utimens.
private func setattr(request: fuse_req_t?, inode: fuse_ino_t, attr: UnsafeMutablePointer<stat>?, toSet: Int32, info: UnsafeMutablePointer<fuse_file_info>?) {
    serve(request) { fs in
        guard let attr = attr?.pointee else { throw FileSystemError.invalid }
        var changes = SetAttributes()
        if toSet & FUSE_SET_ATTR_MODE != 0 { changes.mode = UInt32(attr.st_mode) & 0o7777 }
        if toSet & FUSE_SET_ATTR_UID != 0 { changes.uid = attr.st_uid }
        if toSet & FUSE_SET_ATTR_GID != 0 { changes.gid = attr.st_gid }
        if toSet & FUSE_SET_ATTR_SIZE != 0 { changes.size = UInt64(attr.st_size) }
        if toSet & FUSE_SET_ATTR_ATIME_NOW != 0 { changes.atime = .now } else if toSet & FUSE_SET_ATTR_ATIME != 0 {
            changes.atime = .at(Timespec(attr.st_atim))
        }
        if toSet & FUSE_SET_ATTR_MTIME_NOW != 0 { changes.mtime = .now } else if toSet & FUSE_SET_ATTR_MTIME != 0 {
            changes.mtime = .at(Timespec(attr.st_mtim))
        }
        // Nothing to set: the kernel's own kill of set-id bits on a write (ATTR_FORCE alone,
        // with FUSE_CAP_HANDLE_KILLPRIV), which the write itself does here.
        guard !changes.isEmpty else {
            return replyAttributes(request, try fs.cacheManager.getAttributes(inode, handle: info?.pointee.fh))
        }
        replyAttributes(request, try fs.cacheManager.setAttributes(inode, changes, handle: info?.pointee.fh))
    }
}

/// A symlink's target.
private func readlink(request: fuse_req_t?, inode: fuse_ino_t) {
    serve(request) { fs in
        let target = try fs.cacheManager.readlink(inode)
        _ = target.withCString { fuse_reply_readlink(request, $0) }
    }
}

/// A device, fifo or socket; a regular file is a create released at once.
private func mknod(request: fuse_req_t?, parent: fuse_ino_t, rawName: UnsafePointer<CChar>?, mode: mode_t, rdev: dev_t) {
    serve(request) { fs in
        guard let type = FileType(modeBits: mode) else { throw FileSystemError.invalid }
        let entry = type == .regular
            ? try createAndRelease(fs, parent: parent, name: name(rawName), mode: UInt32(mode), request: request)
            : try fs.cacheManager.makeNode(parent: parent, name: name(rawName), type: type, mode: UInt32(mode),
                                           rdev: UInt64(rdev), context: context(request))
        replyEntry(request, entry)
    }
}

private func mkdir(request: fuse_req_t?, parent: fuse_ino_t, rawName: UnsafePointer<CChar>?, mode: mode_t) {
    serve(request) { fs in
        replyEntry(request, try fs.cacheManager.makeDirectory(parent: parent, name: name(rawName), mode: UInt32(mode),
                                                              context: context(request)))
    }
}

private func unlink(request: fuse_req_t?, parent: fuse_ino_t, rawName: UnsafePointer<CChar>?) {
    serve(request) { fs in
        try fs.cacheManager.unlink(parent: parent, name: name(rawName))
        fuse_reply_err(request, 0)
    }
}

private func rmdir(request: fuse_req_t?, parent: fuse_ino_t, rawName: UnsafePointer<CChar>?) {
    serve(request) { fs in
        try fs.cacheManager.removeDirectory(parent: parent, name: name(rawName))
        fuse_reply_err(request, 0)
    }
}

private func symlink(request: fuse_req_t?, target: UnsafePointer<CChar>?, parent: fuse_ino_t, rawName: UnsafePointer<CChar>?) {
    serve(request) { fs in
        replyEntry(request, try fs.cacheManager.symlink(parent: parent, name: name(rawName), target: name(target),
                                                        context: context(request)))
    }
}

/// rename(2) with RENAME_NOREPLACE; RENAME_EXCHANGE is refused.
private func rename(request: fuse_req_t?, parent: fuse_ino_t, rawName: UnsafePointer<CChar>?, newParent: fuse_ino_t, rawNewName: UnsafePointer<CChar>?, flags: UInt32) {
    serve(request) { fs in
        if flags & PEACH_RENAME_EXCHANGE != 0 { throw FileSystemError.invalid }
        try fs.cacheManager.rename(parent: parent, name: name(rawName), newParent: newParent, newName: name(rawNewName),
                                   noReplace: flags & PEACH_RENAME_NOREPLACE != 0)
        fuse_reply_err(request, 0)
    }
}

private func link(request: fuse_req_t?, inode: fuse_ino_t, newParent: fuse_ino_t, rawNewName: UnsafePointer<CChar>?) {
    serve(request) { fs in
        replyEntry(request, try fs.cacheManager.link(inode, newParent: newParent, newName: name(rawNewName)))
    }
}

private func open(request: fuse_req_t?, inode: fuse_ino_t, info: UnsafeMutablePointer<fuse_file_info>?) {
    serve(request) { fs in
        let reply = try fs.cacheManager.open(inode, flags: info?.pointee.flags ?? O_RDONLY)
        apply(reply, to: info)
        if fuse_reply_open(request, info) != 0 { fs.cacheManager.release(handle: reply.handle) }
    }
}

/// O_CREAT: the new file's entry and an open handle in one reply.
private func create(request: fuse_req_t?, parent: fuse_ino_t, rawName: UnsafePointer<CChar>?, mode: mode_t, info: UnsafeMutablePointer<fuse_file_info>?) {
    serve(request) { fs in
        let (entry, reply) = try fs.cacheManager.create(parent: parent, name: name(rawName), mode: UInt32(mode),
                                                        flags: info?.pointee.flags ?? O_RDWR, context: context(request))
        apply(reply, to: info)
        var parameters = fuse_entry_param(entry)
        if fuse_reply_create(request, &parameters, info) != 0 { fs.cacheManager.release(handle: reply.handle) }
    }
}

private func read(request: fuse_req_t?, _: fuse_ino_t, size: Int, offset: off_t, info: UnsafeMutablePointer<fuse_file_info>?) {
    serve(request) { fs in
        let handle = try openHandle(info)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16)
        defer { buffer.deallocate() }
        let count = try fs.cacheManager.read(handle: handle, offset: UInt64(offset), into: buffer)
        fuse_reply_buf(request, buffer.baseAddress?.assumingMemoryBound(to: CChar.self), count)
    }
}

private func write(request: fuse_req_t?, _: fuse_ino_t, bytes: UnsafePointer<CChar>?, size: Int, offset: off_t, info: UnsafeMutablePointer<fuse_file_info>?) {
    serve(request) { fs in
        let handle = try openHandle(info)
        let count = try fs.cacheManager.write(handle: handle, offset: UInt64(offset),
                                              from: UnsafeRawBufferPointer(start: bytes, count: size))
        fuse_reply_write(request, count)
    }
}

/// close(2) of one descriptor: the store of a dirty file.
private func flush(request: fuse_req_t?, _: fuse_ino_t, info: UnsafeMutablePointer<fuse_file_info>?) {
    serve(request) { fs in
        let handle = try openHandle(info)
        try fs.cacheManager.flush(handle: handle)
        fuse_reply_err(request, 0)
    }
}

/// The last descriptor of an open is gone.
private func release(request: fuse_req_t?, _: fuse_ino_t, info: UnsafeMutablePointer<fuse_file_info>?) {
    serve(request) { fs in
        if let handle = info?.pointee.fh { fs.cacheManager.release(handle: handle) }
        fuse_reply_err(request, 0)
    }
}

private func fsync(request: fuse_req_t?, _: fuse_ino_t, _: Int32, info: UnsafeMutablePointer<fuse_file_info>?) {
    serve(request) { fs in
        let handle = try openHandle(info)
        try fs.cacheManager.fsync(handle: handle)
        fuse_reply_err(request, 0)
    }
}

/// The listing is read at opendir and served from the handle, so that readdir's offsets stay stable.
private func opendir(request: fuse_req_t?, inode: fuse_ino_t, info: UnsafeMutablePointer<fuse_file_info>?) {
    serve(request) { fs in
        let entries = try fs.cacheManager.readDirectory(inode)
        let handle = fs.directoryHandles.withLockedValue { table -> UInt64 in
            let handle = table.next
            table.next += 1
            table.open[handle] = entries
            return handle
        }
        info?.pointee.fh = handle
        if fuse_reply_open(request, info) != 0 {
            _ = fs.directoryHandles.withLockedValue { $0.open.removeValue(forKey: handle) }
        }
    }
}

private func readdir(request: fuse_req_t?, _: fuse_ino_t, size: Int, offset: off_t, info: UnsafeMutablePointer<fuse_file_info>?) {
    serve(request) { fs in
        guard let handle = info?.pointee.fh,
              let entries = fs.directoryHandles.withLockedValue({ $0.open[handle] }) else { throw FileSystemError.badHandle }
        let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: size)
        defer { buffer.deallocate() }
        var used = 0
        var index = max(0, Int(offset))
        while index < entries.count {
            let entry = entries[index]
            var attr = stat()
            attr.st_ino = UInt(entry.inode)
            attr.st_mode = entry.type.modeBits
            let needed = entry.name.withCString {
                fuse_add_direntry(request, buffer + used, size - used, $0, &attr, off_t(index + 1))
            }
            if needed > size - used { break }
            used += needed
            index += 1
        }
        fuse_reply_buf(request, buffer, used)
    }
}

private func releasedir(request: fuse_req_t?, _: fuse_ino_t, info: UnsafeMutablePointer<fuse_file_info>?) {
    let fs = FUSEFileSystem.from(request)
    if let handle = info?.pointee.fh { _ = fs.directoryHandles.withLockedValue { $0.open.removeValue(forKey: handle) } }
    fuse_reply_err(request, 0)
}

/// Namespace changes are synchronous at the server: nothing to sync.
private func fsyncdir(request: fuse_req_t?, _: fuse_ino_t, _: Int32, _: UnsafeMutablePointer<fuse_file_info>?) {
    // Namespace changes are synchronous at the server: nothing to sync.
    fuse_reply_err(request, 0)
}

/// The volume's size and free space.
private func statfs(request: fuse_req_t?, _: fuse_ino_t) {
    serve(request) { fs in
        let volume = try fs.cacheManager.volumeStatus()
        var st = statvfs()
        st.f_bsize = UInt(volume.blockSize)
        st.f_frsize = UInt(volume.blockSize)
        st.f_blocks = UInt(volume.totalBlocks)
        st.f_bfree = UInt(volume.freeBlocks)
        st.f_bavail = UInt(volume.freeBlocks)
        st.f_files = UInt(volume.totalFiles)
        st.f_ffree = UInt(volume.freeFiles)
        st.f_favail = UInt(volume.freeFiles)
        st.f_namemax = 255
        fuse_reply_statfs(request, &st)
    }
}

/// Only the control attributes (`ControlAttributes`).
private func getxattr(request: fuse_req_t?, inode: fuse_ino_t, rawName: UnsafePointer<CChar>?, size: Int) {
    serve(request) { fs in
        let value = try ControlAttributes.get(name(rawName), inode: inode, cacheManager: fs.cacheManager)
        if size == 0 {
            fuse_reply_xattr(request, value.count)
        } else if size < value.count {
            fuse_reply_err(request, ERANGE)
        } else {
            _ = value.withUnsafeBufferPointer { fuse_reply_buf(request, $0.baseAddress, value.count) }
        }
    }
}

/// Only the control attributes (`ControlAttributes`).
private func setxattr(request: fuse_req_t?, inode: fuse_ino_t, rawName: UnsafePointer<CChar>?, rawValue: UnsafePointer<CChar>?, size: Int, _: Int32) {
    serve(request) { fs in
        let value = rawValue.map { Array(UnsafeRawBufferPointer(start: $0, count: min(size, 64))) } ?? []
        try ControlAttributes.set(name(rawName), value: value, inode: inode, cacheManager: fs.cacheManager)
        fuse_reply_err(request, 0)
    }
}

/// No extended attributes are stored; the control names are not listed.
private func listxattr(request: fuse_req_t?, _: fuse_ino_t, size: Int) {
    // No extended attributes are stored; the control names are not listed.
    if size == 0 { fuse_reply_xattr(request, 0) } else { fuse_reply_buf(request, nil, 0) }
}

private func removexattr(request: fuse_req_t?, _: fuse_ino_t, _: UnsafePointer<CChar>?) {
    fuse_reply_err(request, ENODATA)
}

/// mknod(S_IFREG) is a create whose handle is released at once.
private func createAndRelease(_ fs: FUSEFileSystem, parent: Inode, name: String, mode: UInt32, request: fuse_req_t?) throws -> Entry {
    let (entry, reply) = try fs.cacheManager.create(parent: parent, name: name, mode: mode, flags: O_WRONLY | O_EXCL,
                                                    context: context(request))
    fs.cacheManager.release(handle: reply.handle)
    return entry
}
