import PeachProtocol

extension CreateRequest {
    /// A create of `name` in `directory` for the calling process: the new object belongs to its
    /// uid and gid, as on a local file system.
    init(in directory: FID, name: String, type: FileType, mode: UInt32, context: RequestContext,
         rdev: UInt64 = 0, symlinkTarget: String = "") {
        self.init(directory: directory, name: name, type: type, mode: mode & 0o7777, uid: context.uid, gid: context.gid,
                  rdev: rdev, symlinkTarget: symlinkTarget)
    }
}

extension FileSystemError {
    /// Names longer than 255 bytes are refused before they reach the server, as Linux does.
    static func checkName(_ name: String) throws {
        guard name.utf8.count <= 255 else { throw FileSystemError.nameTooLong }
    }
}
