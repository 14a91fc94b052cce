import NIOCore

/// Encodes and decodes message bodies. Pure functions over ByteBuffer; every decoder consumes the
/// whole body and throws `ProtocolError` on anything malformed.
public enum RequestCodec {
    public static func encode(_ request: Request, into b: inout ByteBuffer) {
        switch request {
        case .hello(let h):
            b.writeInteger(h.version)
            b.writeWireString(h.clientID)
            b.writeInteger(h.epoch)
        case .ping, .getVolumeStatus:
            break
        case .fetchStatus(let fid), .fetchData(let fid):
            b.writeFID(fid)
        case .bulkStatus(let fids), .giveUpCallBacks(let fids):
            b.writeFIDs(fids)
        case .storeData(let fid, let size, let mtime):
            b.writeFID(fid)
            b.writeInteger(size)
            b.writeTimespec(mtime)
        case .storeStatus(let fid, let a):
            b.writeFID(fid)
            b.writeOptional(a.mode)
            b.writeOptional(a.uid)
            b.writeOptional(a.gid)
            b.writeOptional(a.size)
            b.writeTimeToSet(a.atime)
            b.writeTimeToSet(a.mtime)
        case .createFile(let c), .makeDir(let c), .symlink(let c):
            b.writeFID(c.directory)
            b.writeWireString(c.name)
            b.writeFileType(c.type)
            b.writeInteger(c.mode)
            b.writeInteger(c.uid)
            b.writeInteger(c.gid)
            b.writeInteger(c.rdev)
            b.writeWireString(c.symlinkTarget)
        case .link(let dir, let name, let target):
            b.writeFID(dir)
            b.writeWireString(name)
            b.writeFID(target)
        case .removeFile(let dir, let name), .removeDir(let dir, let name):
            b.writeFID(dir)
            b.writeWireString(name)
        case .rename(let fromDir, let fromName, let toDir, let toName):
            b.writeFID(fromDir)
            b.writeWireString(fromName)
            b.writeFID(toDir)
            b.writeWireString(toName)
        }
    }

    public static func decode(opcode rawOpcode: UInt16, body: ByteBuffer) throws -> Request {
        guard let opcode = Opcode(rawValue: rawOpcode) else { throw ProtocolError.unknownOpcode(rawOpcode) }
        var b = body
        let request: Request
        switch opcode {
        case .hello:
            request = .hello(Hello(version: try b.readOrThrow(UInt16.self, "version"),
                                   clientID: try b.readWireString("client id"),
                                   epoch: try b.readOrThrow(UInt64.self, "epoch")))
        case .ping: request = .ping
        case .getVolumeStatus: request = .getVolumeStatus
        case .fetchStatus: request = .fetchStatus(try b.readFID())
        case .fetchData: request = .fetchData(try b.readFID())
        case .bulkStatus: request = .bulkStatus(try b.readFIDs())
        case .giveUpCallBacks: request = .giveUpCallBacks(try b.readFIDs())
        case .storeData: request = .storeData(try b.readFID(), size: try b.readOrThrow(UInt64.self, "size"), mtime: try b.readTimespec())
        case .storeStatus:
            let fid = try b.readFID()
            let attributes = SetAttributes(
                mode: try b.readOptional(UInt32.self, "mode"), uid: try b.readOptional(UInt32.self, "uid"),
                gid: try b.readOptional(UInt32.self, "gid"), size: try b.readOptional(UInt64.self, "size"),
                atime: try b.readTimeToSet(), mtime: try b.readTimeToSet())
            request = .storeStatus(fid, attributes)
        case .createFile, .makeDir, .symlink:
            let c = CreateRequest(
                directory: try b.readFID(), name: try b.readWireString("name"), type: try b.readFileType(),
                mode: try b.readOrThrow(UInt32.self, "mode"), uid: try b.readOrThrow(UInt32.self, "uid"),
                gid: try b.readOrThrow(UInt32.self, "gid"), rdev: try b.readOrThrow(UInt64.self, "rdev"),
                symlinkTarget: try b.readWireString("symlink target"))
            request = opcode == .createFile ? .createFile(c) : opcode == .makeDir ? .makeDir(c) : .symlink(c)
        case .link:
            request = .link(directory: try b.readFID(), name: try b.readWireString("name"), target: try b.readFID())
        case .removeFile:
            request = .removeFile(directory: try b.readFID(), name: try b.readWireString("name"))
        case .removeDir:
            request = .removeDir(directory: try b.readFID(), name: try b.readWireString("name"))
        case .rename:
            request = .rename(fromDirectory: try b.readFID(), fromName: try b.readWireString("name"),
                              toDirectory: try b.readFID(), toName: try b.readWireString("name"))
        }
        guard b.readableBytes == 0 else { throw ProtocolError.trailingBytes(b.readableBytes) }
        return request
    }
}

/// A reply body is `u16 status`, then, when the status is ok, the payload of the request's opcode.
public enum ReplyCodec {
    public static func encode(_ reply: Reply, into b: inout ByteBuffer) {
        b.writeInteger(StatusCode.ok.rawValue)
        switch reply {
        case .hello(let h):
            b.writeInteger(h.version)
            b.writeInteger(h.serverEpoch)
            b.writeBool(h.callBacksLost)
        case .pong, .done:
            break
        case .status(let s, let expiry), .fetchData(let s, let expiry):
            b.writeStatus(s)
            b.writeInteger(expiry)
        case .bulkStatus(let entries, let expiry):
            b.writeInteger(UInt32(entries.count))
            for entry in entries {
                switch entry {
                case .status(let s):
                    b.writeInteger(StatusCode.ok.rawValue)
                    b.writeStatus(s)
                case .error(let code):
                    b.writeInteger(code.rawValue)
                }
            }
            b.writeInteger(expiry)
        case .namespace(let change, let expiry):
            b.writeStatus(change.directory)
            b.writeOptionalStatus(change.target)
            b.writeOptionalStatus(change.otherDirectory)
            b.writeInteger(expiry)
        case .volumeStatus(let v):
            b.writeInteger(v.blockSize)
            b.writeInteger(v.totalBlocks)
            b.writeInteger(v.freeBlocks)
            b.writeInteger(v.totalFiles)
            b.writeInteger(v.freeFiles)
        }
    }

    public static func encodeError(_ code: StatusCode, into b: inout ByteBuffer) {
        precondition(code != .ok)
        b.writeInteger(code.rawValue)
    }

    /// Decodes a reply to a request of `opcode`; a failure status comes back as `.failure`.
    public static func decode(opcode rawOpcode: UInt16, body: ByteBuffer) throws -> Result<Reply, StatusCode> {
        guard let opcode = Opcode(rawValue: rawOpcode) else { throw ProtocolError.unknownOpcode(rawOpcode) }
        var b = body
        let rawStatus = try b.readOrThrow(UInt16.self, "status")
        guard let status = StatusCode(rawValue: rawStatus) else { throw ProtocolError.invalidValue("status \(rawStatus)") }
        guard status == .ok else {
            guard b.readableBytes == 0 else { throw ProtocolError.trailingBytes(b.readableBytes) }
            return .failure(status)
        }
        let reply: Reply
        switch opcode {
        case .hello:
            reply = .hello(HelloReply(version: try b.readOrThrow(UInt16.self, "version"),
                                      serverEpoch: try b.readOrThrow(UInt64.self, "epoch"),
                                      callBacksLost: try b.readBool("callbacks lost")))
        case .ping: reply = .pong
        case .giveUpCallBacks: reply = .done
        case .fetchStatus, .storeStatus, .storeData:
            reply = .status(try b.readStatus(), callBackExpiry: try b.readOrThrow(UInt64.self, "expiry"))
        case .fetchData:
            reply = .fetchData(try b.readStatus(), callBackExpiry: try b.readOrThrow(UInt64.self, "expiry"))
        case .bulkStatus:
            let count = try b.readOrThrow(UInt32.self, "count")
            guard Int(count) * 2 <= b.readableBytes else { throw ProtocolError.truncated("bulk status") }
            var entries: [BulkStatusEntry] = []
            entries.reserveCapacity(Int(count))
            for _ in 0..<count {
                let raw = try b.readOrThrow(UInt16.self, "entry status")
                guard let code = StatusCode(rawValue: raw) else { throw ProtocolError.invalidValue("status \(raw)") }
                entries.append(code == .ok ? .status(try b.readStatus()) : .error(code))
            }
            reply = .bulkStatus(entries, callBackExpiry: try b.readOrThrow(UInt64.self, "expiry"))
        case .createFile, .makeDir, .symlink, .link, .removeFile, .removeDir, .rename:
            let change = NamespaceChange(directory: try b.readStatus(), target: try b.readOptionalStatus(),
                                         otherDirectory: try b.readOptionalStatus())
            reply = .namespace(change, callBackExpiry: try b.readOrThrow(UInt64.self, "expiry"))
        case .getVolumeStatus:
            reply = .volumeStatus(VolumeStatus(
                blockSize: try b.readOrThrow(UInt32.self, "block size"),
                totalBlocks: try b.readOrThrow(UInt64.self, "blocks"), freeBlocks: try b.readOrThrow(UInt64.self, "blocks"),
                totalFiles: try b.readOrThrow(UInt64.self, "files"), freeFiles: try b.readOrThrow(UInt64.self, "files")))
        }
        guard b.readableBytes == 0 else { throw ProtocolError.trailingBytes(b.readableBytes) }
        return .success(reply)
    }
}

public enum PushCodec {
    public static func encode(_ push: Push, into b: inout ByteBuffer) {
        switch push {
        case .callBack(let fids, let reason):
            b.writeInteger(reason.rawValue)
            b.writeFIDs(fids)
        case .initCallBackState:
            break
        }
    }

    public static func decode(opcode: UInt16, body: ByteBuffer) throws -> Push {
        var b = body
        let push: Push
        switch opcode {
        case 1:
            let raw = try b.readOrThrow(UInt8.self, "reason")
            guard let reason = CallBackReason(rawValue: raw) else { throw ProtocolError.invalidValue("reason \(raw)") }
            push = .callBack(try b.readFIDs(), reason: reason)
        case 2:
            push = .initCallBackState
        default:
            throw ProtocolError.unknownOpcode(opcode)
        }
        guard b.readableBytes == 0 else { throw ProtocolError.trailingBytes(b.readableBytes) }
        return push
    }
}

/// A directory travels through FetchData as this listing: u32 count, then per entry
/// name, FID and type.
public enum DirectoryListingCodec {
    public static func encode(_ entries: [DirectoryEntry]) -> ByteBuffer {
        var b = ByteBuffer()
        b.writeInteger(UInt32(entries.count))
        for e in entries {
            b.writeWireString(e.name)
            b.writeFID(e.fid)
            b.writeFileType(e.type)
        }
        return b
    }

    public static func decode(_ body: ByteBuffer) throws -> [DirectoryEntry] {
        var b = body
        let count = try b.readOrThrow(UInt32.self, "entry count")
        guard Int(count) * 19 <= b.readableBytes else { throw ProtocolError.truncated("directory listing") }
        var entries: [DirectoryEntry] = []
        entries.reserveCapacity(Int(count))
        for _ in 0..<count {
            entries.append(DirectoryEntry(name: try b.readWireString("name"), fid: try b.readFID(), type: try b.readFileType()))
        }
        guard b.readableBytes == 0 else { throw ProtocolError.trailingBytes(b.readableBytes) }
        return entries
    }
}
