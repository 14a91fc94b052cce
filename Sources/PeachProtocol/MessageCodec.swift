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
            b.writeInteger(h.design.wireValue)
        case .ping, .getVolumeStatus, .giveUpAllCallBacks:
            break
        case .fetchStatus(let fid), .commit(let fid), .readlink(let fid):
            b.writeFID(fid)
        case .fetchData(let fid, let range):
            b.writeFID(fid)
            b.writeInteger(range.offset)
            b.writeInteger(range.length)
        case .bulkStatus(let fids), .giveUpCallBacks(let fids):
            b.writeFIDs(fids)
        case .storeData(let fid, let size, let mtime, let status, let baseVersion):
            b.writeFID(fid)
            b.writeInteger(size)
            b.writeTimespec(mtime)
            b.writeOptional(status.mode)
            b.writeOptional(status.uid)
            b.writeOptional(status.gid)
            b.writeTimeToSet(status.atime.map { .at($0) })
            b.writeOptional(baseVersion)
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
        case .removeFile(let dir, let name), .removeDir(let dir, let name), .lookup(let dir, let name):
            b.writeFID(dir)
            b.writeWireString(name)
        case .rename(let fromDir, let fromName, let toDir, let toName):
            b.writeFID(fromDir)
            b.writeWireString(fromName)
            b.writeFID(toDir)
            b.writeWireString(toName)
        case .read(let fid, let offset, let count):
            b.writeFID(fid)
            b.writeInteger(offset)
            b.writeInteger(count)
        case .write(let fid, let offset, let data):
            b.writeFID(fid)
            b.writeInteger(offset)
            b.writeInteger(UInt32(data.count))
            b.writeBytes(data)
        case .readDir(let fid, let cookie, let count):
            b.writeFID(fid)
            b.writeInteger(cookie)
            b.writeInteger(count)
        case .admin(let query):
            b.writeInteger(query.kind)
            if case .callBacks(let path, let client) = query {
                b.writeWireString(path)
                b.writeWireString(client)
            }
        }
    }

    public static func decode(opcode rawOpcode: UInt16, body: ByteBuffer) throws -> Request {
        guard let opcode = Opcode(rawValue: rawOpcode) else { throw ProtocolError.unknownOpcode(rawOpcode) }
        var b = body
        let request: Request
        switch opcode {
        case .hello:
            let version = try b.readOrThrow(UInt16.self, "version")
            let clientID = try b.readWireString("client id")
            let epoch = try b.readOrThrow(UInt64.self, "epoch")
            guard version == peachProtocolVersion else {
                // Another version's Hello may go on differently: enough to answer versionMismatch.
                return .hello(Hello(version: version, clientID: clientID, epoch: epoch))
            }
            let raw = try b.readOrThrow(UInt8.self, "design")
            guard let design = ClientDesign(wireValue: raw) else { throw ProtocolError.invalidValue("design \(raw)") }
            request = .hello(Hello(version: version, clientID: clientID, epoch: epoch, design: design))
        case .ping: request = .ping
        case .getVolumeStatus: request = .getVolumeStatus
        case .giveUpAllCallBacks: request = .giveUpAllCallBacks
        case .fetchStatus: request = .fetchStatus(try b.readFID())
        case .commit: request = .commit(try b.readFID())
        case .readlink: request = .readlink(try b.readFID())
        case .admin:
            switch try b.readOrThrow(UInt8.self, "admin query") {
            case 1: request = .admin(.clients)
            case 2: request = .admin(.callBacks(path: try b.readWireString("path"), client: try b.readWireString("client")))
            case 3: request = .admin(.statistics)
            case 4: request = .admin(.backup)
            case let other: throw ProtocolError.invalidValue("admin query \(other)")
            }
        case .fetchData:
            request = .fetchData(try b.readFID(), range: ByteRange(offset: try b.readOrThrow(UInt64.self, "offset"),
                                                                   length: try b.readOrThrow(UInt64.self, "length")))
        case .bulkStatus: request = .bulkStatus(try b.readFIDs())
        case .giveUpCallBacks: request = .giveUpCallBacks(try b.readFIDs())
        case .storeData:
            let (fid, size, mtime) = (try b.readFID(), try b.readOrThrow(UInt64.self, "size"), try b.readTimespec())
            var status = StoreStatusChange(mode: try b.readOptional(UInt32.self, "mode"), uid: try b.readOptional(UInt32.self, "uid"),
                                           gid: try b.readOptional(UInt32.self, "gid"))
            switch try b.readTimeToSet() {
            case nil: break
            case .at(let atime): status.atime = atime
            case .now: throw ProtocolError.invalidValue("atime: a store carries the client's time")
            }
            request = .storeData(fid, size: size, mtime: mtime, status: status, baseVersion: try b.readOptional(UInt64.self, "base version"))
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
            switch opcode {
            case .createFile: request = .createFile(c)
            case .makeDir: request = .makeDir(c)
            default: request = .symlink(c)
            }
        case .link:
            request = .link(directory: try b.readFID(), name: try b.readWireString("name"), target: try b.readFID())
        case .removeFile, .removeDir, .lookup:
            let (dir, name) = (try b.readFID(), try b.readWireString("name"))
            switch opcode {
            case .removeFile: request = .removeFile(directory: dir, name: name)
            case .removeDir: request = .removeDir(directory: dir, name: name)
            default: request = .lookup(directory: dir, name: name)
            }
        case .rename:
            let (fromDir, fromName) = (try b.readFID(), try b.readWireString("name"))
            let (toDir, toName) = (try b.readFID(), try b.readWireString("name"))
            request = .rename(fromDirectory: fromDir, fromName: fromName, toDirectory: toDir, toName: toName)
        case .read:
            request = .read(try b.readFID(), offset: try b.readOrThrow(UInt64.self, "offset"),
                            count: try b.readOrThrow(UInt32.self, "count"))
        case .write:
            let fid = try b.readFID()
            let offset = try b.readOrThrow(UInt64.self, "offset")
            let count = try b.readOrThrow(UInt32.self, "count")
            guard let data = b.readBytes(length: Int(count)) else { throw ProtocolError.truncated("write data") }
            request = .write(fid, offset: offset, data: data)
        case .readDir:
            request = .readDir(try b.readFID(), cookie: try b.readOrThrow(UInt32.self, "cookie"),
                               count: try b.readOrThrow(UInt32.self, "count"))
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
            b.writeInteger(h.leaseMilliseconds)
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
        case .lookup(let directory, let object):
            b.writeStatus(directory)
            b.writeStatus(object)
        case .read(let s, let data):
            b.writeStatus(s)
            b.writeInteger(UInt32(data.count))
            b.writeBytes(data)
        case .write(let before, let s):
            b.writeInteger(before)
            b.writeStatus(s)
        case .readDir(let s, let entries, let end):
            b.writeStatus(s)
            b.writeBool(end)
            var listing = DirectoryListingCodec.encode(entries)
            b.writeBuffer(&listing)
        case .readlink(let s, let target):
            b.writeStatus(s)
            b.writeWireString(target)
        case .adminReport(let json):
            b.writeInteger(UInt8(1))
            b.writeInteger(UInt32(json.count))
            b.writeBytes(json)
        case .backup(let size):
            b.writeInteger(UInt8(2))
            b.writeInteger(size)
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
                                      callBacksLost: try b.readBool("callbacks lost"),
                                      leaseMilliseconds: try b.readOrThrow(UInt32.self, "lease")))
        case .ping: reply = .pong
        case .giveUpCallBacks, .giveUpAllCallBacks: reply = .done
        case .fetchStatus, .storeStatus, .storeData, .commit:
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
        case .lookup:
            reply = .lookup(directory: try b.readStatus(), object: try b.readStatus())
        case .read:
            let status = try b.readStatus()
            let count = try b.readOrThrow(UInt32.self, "count")
            guard let data = b.readBytes(length: Int(count)) else { throw ProtocolError.truncated("read data") }
            reply = .read(status, data: data)
        case .write:
            reply = .write(before: try b.readOrThrow(UInt64.self, "data version"), try b.readStatus())
        case .readDir:
            let status = try b.readStatus()
            let end = try b.readBool("end of listing")
            let entries = try DirectoryListingCodec.decode(b)
            b.moveReaderIndex(to: b.writerIndex)
            reply = .readDir(status, entries: entries, endOfListing: end)
        case .readlink:
            reply = .readlink(try b.readStatus(), target: try b.readWireString("target"))
        case .createFile, .makeDir, .symlink, .link, .removeFile, .removeDir, .rename:
            let change = NamespaceChange(directory: try b.readStatus(), target: try b.readOptionalStatus(),
                                         otherDirectory: try b.readOptionalStatus())
            reply = .namespace(change, callBackExpiry: try b.readOrThrow(UInt64.self, "expiry"))
        case .getVolumeStatus:
            reply = .volumeStatus(VolumeStatus(
                blockSize: try b.readOrThrow(UInt32.self, "block size"),
                totalBlocks: try b.readOrThrow(UInt64.self, "blocks"), freeBlocks: try b.readOrThrow(UInt64.self, "blocks"),
                totalFiles: try b.readOrThrow(UInt64.self, "files"), freeFiles: try b.readOrThrow(UInt64.self, "files")))
        case .admin:
            switch try b.readOrThrow(UInt8.self, "admin reply") {
            case 1:
                let count = try b.readOrThrow(UInt32.self, "report length")
                guard let json = b.readBytes(length: Int(count)) else { throw ProtocolError.truncated("admin report") }
                reply = .adminReport(json)
            case 2: reply = .backup(size: try b.readOrThrow(UInt64.self, "backup size"))
            case let other: throw ProtocolError.invalidValue("admin reply \(other)")
            }
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
