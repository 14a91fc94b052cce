import PeachProtocol

extension FileStatus {
    /// Applies `changes` to this status only: for a file unlinked while open, whose changes the
    /// server never hears of. The size is set as given; the caller changes the data to match.
    mutating func applyLocally(_ changes: SetAttributes, now: Timespec = .now()) {
        func time(_ t: TimeToSet?) -> Timespec? {
            switch t {
            case nil: nil
            case .now: now
            case .at(let t): t
            }
        }
        if let mode = changes.mode { self.mode = mode & 0o7777 }
        if let uid = changes.uid { self.uid = uid }
        if let gid = changes.gid { self.gid = gid }
        if let atime = time(changes.atime) { self.atime = atime }
        if let mtime = time(changes.mtime) { self.mtime = mtime }
        if let size = changes.size {
            self.size = size
            if changes.mtime == nil { mtime = now }
        }
        ctime = now
    }
}
