import Glibc
import NIOConcurrencyHelpers

/// Cache files kept for reuse, as OpenAFS's cache manager reuses its V-files. A file made for
/// every new version and unlinked with the old one costs the local file system an inode
/// allocation and a free each time (on ext4, a quarter of the cache manager's samples in a
/// create loop); a copy that goes (replaced by a newer version, removed, evicted) is moved here
/// instead, and the next new copy is one of these, truncated.
///
/// A file a descriptor still holds open is never reused: a reader keeps the version it opened.
/// Every descriptor on a cache file is therefore opened and closed here, recorded by inode
/// number (which a rename to a new version's name keeps), under the same lock as `retire`: an
/// open either comes first and keeps its file out of the spares, or finds its name gone.
final class SpareCacheFiles: Sendable {
    /// A descriptor on a cache file, and the file's inode number.
    struct Descriptor: Sendable {
        let fd: Int32
        let inode: UInt64
    }

    private struct State {
        var spares: [String] = []
        var nextName: UInt64 = 0
        var openInodes: [UInt64: Int] = [:]
    }

    let directory: String
    private let state = NIOLockedValueBox(State())
    /// The most spares kept; past it, a retired file is unlinked.
    static let capacity = 256

    /// Spares left by an earlier run are reused too: what they hold never matters.
    init(cacheDirectory: String) throws {
        directory = cacheDirectory + "/spares"
        guard mkdir(directory, 0o700) == 0 || errno == EEXIST else { throw FileSystemError(errno, "creating \(directory)") }
        var leftovers: [String] = []
        if let handle = opendir(directory) {
            defer { closedir(handle) }
            while let entry = readdir(handle) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.baseAddress!.assumingMemoryBound(to: CChar.self)) }
                guard name != ".", name != ".." else { continue }
                if leftovers.count < Self.capacity { leftovers.append(directory + "/" + name) } else { unlink(directory + "/" + name) }
            }
        }
        state.withLockedValue { state in
            state.spares = leftovers
            state.nextName = UInt64(leftovers.count)
        }
    }

    var count: Int { state.withLockedValue { $0.spares.count } }

    /// Opens the cache file at `path`; nil with errno set if it cannot.
    func open(_ path: String, flags: Int32) -> Descriptor? {
        state.withLockedValue { state in Self.open(path, flags: flags, mode: 0, recordingIn: &state) }
    }

    /// A new, empty cache file at `path`, opened with `flags`: a spare renamed there and
    /// truncated if there is one, else a file made anew. Nil with errno set if neither worked.
    func create(_ path: String, flags: Int32) -> Descriptor? {
        state.withLockedValue { state in
            while let spare = state.spares.popLast() {
                guard rename(spare, path) == 0 else { continue }
                if let descriptor = Self.open(path, flags: flags | O_TRUNC, mode: 0, recordingIn: &state) { return descriptor }
                break
            }
            return Self.open(path, flags: flags | O_CREAT | O_TRUNC, mode: 0o600, recordingIn: &state)
        }
    }

    /// Closes a descriptor from `open` or `create`.
    func close(_ descriptor: Descriptor) {
        state.withLockedValue { state in
            if let count = state.openInodes[descriptor.inode], count > 1 {
                state.openInodes[descriptor.inode] = count - 1
            } else {
                state.openInodes[descriptor.inode] = nil
            }
        }
        Glibc.close(descriptor.fd)
    }

    /// The file at `path` holds no cached copy any more: it becomes an empty spare, unless a
    /// descriptor holds it open (its reader keeps it, and it goes with the last close) or enough
    /// are kept. Its blocks are freed now, as an unlink would, so spares cost no cache space.
    func retire(_ path: String) {
        let spare = state.withLockedValue { state -> String? in
            var st = stat()
            guard stat(path, &st) == 0 else { return nil }
            if state.openInodes[UInt64(st.st_ino)] != nil || state.spares.count >= Self.capacity {
                unlink(path)
                return nil
            }
            let spare = "\(directory)/\(state.nextName)"
            state.nextName += 1
            guard rename(path, spare) == 0 else {
                unlink(path)
                return nil
            }
            return spare
        }
        // Out of the lock: under its spare name, listed nowhere yet, no one can open it.
        guard let spare else { return }
        guard truncate(spare, 0) == 0 else {
            unlink(spare)
            return
        }
        state.withLockedValue { $0.spares.append(spare) }
    }

    private static func open(_ path: String, flags: Int32, mode: mode_t, recordingIn state: inout State) -> Descriptor? {
        let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
        guard fd >= 0 else { return nil }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let saved = errno
            Glibc.close(fd)
            errno = saved
            return nil
        }
        let inode = UInt64(st.st_ino)
        state.openInodes[inode, default: 0] += 1
        return Descriptor(fd: fd, inode: inode)
    }
}
