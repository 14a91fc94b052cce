import PeachProtocol

/// What answering one request produced: a reply, perhaps content to stream after it, and the
/// callbacks the request broke (to deliver before the reply goes out).
/// `package`: the fuzz targets (PeachFuzzing) drive the processor directly.
package struct Outcome: Sendable {
    package var reply: Reply
    package var content: VolumeStore.Content?
    package var breaks: [String: [FID]] = [:]
    package var reason: CallBackReason = .store
}

/// Maps each request to the volume store. Runs on the server's thread pool: SQLite calls block.
package struct RequestProcessor: Sendable {
    package let store: VolumeStore

    package init(store: VolumeStore) {
        self.store = store
    }

    /// - Parameters:
    ///   - requester: the connection's client, its design (callbacks or none) and the identity the
    ///     request acts as.
    ///   - upload: StoreData only: its data, in memory (a small store) or in the file its data
    ///     frames were written to, fsynced.
    package func process(_ request: Request, for requester: Requester, upload: VolumeStore.UploadedContent? = nil) throws -> Outcome {
        let outcome: Outcome
        do {
            outcome = try answer(request, for: requester, upload: upload)
        } catch let replayed as ReplayTable.Replayed {
            // Carried out before, its reply lost with a connection: the same reply, nothing redone.
            // The first time's breaks may not all have been acknowledged (the server may have
            // crashed before): the reply waits for every break still unacknowledged, as the
            // first one would have.
            return Outcome(reply: replayed.reply, breaks: try store.unsettledBreaks(except: requester.clientID))
        }
        if store.syncPolicy.syncsBeforeReply(request) {
            try store.makeDurable()
        } else if request.isChange {
            store.groupSync.noteUnsyncedCommit()
        }
        return outcome
    }

    private func answer(_ request: Request, for requester: Requester, upload: VolumeStore.UploadedContent?) throws -> Outcome {
        switch request {
        case .hello, .admin:
            // Answered by the connection itself (the handshake, `administer`).
            throw StatusCode.protocolError
        case .ping:
            return Outcome(reply: .pong)
        case .fetchStatus(let fid):
            let (status, expiry) = try store.fetchStatus(fid, client: requester)
            return Outcome(reply: .status(status, callBackExpiry: expiry))
        case .bulkStatus(let fids):
            let (entries, expiry) = try store.bulkStatus(fids, client: requester)
            return Outcome(reply: .bulkStatus(entries, callBackExpiry: expiry))
        case .fetchData(let fid, let range):
            let (status, expiry, content) = try store.fetchData(fid, range: range, client: requester)
            return Outcome(reply: .fetchData(status, callBackExpiry: expiry), content: content)
        case .storeData(let fid, let size, let mtime, let status, let baseVersion):
            guard let upload else { throw StatusCode.protocolError }
            return statusOutcome(try store.store(fid, client: requester, content: upload, size: size, mtime: mtime, status: status,
                                                 baseVersion: baseVersion))
        case .storeStatus(let fid, let attributes):
            return statusOutcome(try store.setAttributes(fid, attributes, client: requester))
        case .createFile(let c):
            guard c.type != .directory, c.type != .symlink else { throw StatusCode.invalidArgument }
            return namespaceOutcome(try store.create(c, client: requester))
        case .makeDir(var c):
            c.type = .directory
            return namespaceOutcome(try store.create(c, client: requester))
        case .symlink(var c):
            c.type = .symlink
            return namespaceOutcome(try store.create(c, client: requester))
        case .link(let directory, let name, let target):
            return namespaceOutcome(try store.link(directory: directory, name: name, target: target, client: requester))
        case .removeFile(let directory, let name):
            return namespaceOutcome(try store.remove(directory: directory, name: name, isDirectory: false, client: requester))
        case .removeDir(let directory, let name):
            return namespaceOutcome(try store.remove(directory: directory, name: name, isDirectory: true, client: requester))
        case .rename(let fromDirectory, let fromName, let toDirectory, let toName):
            return namespaceOutcome(try store.rename(from: fromDirectory, fromName, to: toDirectory, toName, client: requester))
        case .giveUpCallBacks(let fids):
            try store.giveUpCallBacks(fids, client: requester.clientID)
            return Outcome(reply: .done)
        case .giveUpAllCallBacks:
            try store.giveUpAllCallBacks(client: requester.clientID)
            return Outcome(reply: .done)
        case .getVolumeStatus:
            return Outcome(reply: .volumeStatus(try store.volumeStatus()))
        case .lookup(let directory, let name):
            let (dir, object) = try store.lookup(directory: directory, name: name, as: requester.identity)
            return Outcome(reply: .lookup(directory: dir, object: object))
        case .read(let fid, let offset, let count):
            let (status, data) = try store.read(fid, offset: offset, count: count, as: requester.identity)
            return Outcome(reply: .read(status, data: data))
        case .write(let fid, let offset, let data):
            let m = try store.write(fid, offset: offset, data: data, client: requester)
            return Outcome(reply: .write(before: m.value.before, m.value.after), breaks: m.breaks, reason: m.reason)
        case .commit(let fid):
            return Outcome(reply: .status(try store.commit(fid), callBackExpiry: 0))
        case .readDir(let fid, let cookie, let count):
            let (status, entries, end) = try store.readDirectory(fid, cookie: cookie, count: count, as: requester.identity)
            return Outcome(reply: .readDir(status, entries: entries, endOfListing: end))
        case .readlink(let fid):
            let (status, target) = try store.readlink(fid)
            return Outcome(reply: .readlink(status, target: target))
        }
    }

    func statusOutcome(_ m: Mutation<FileStatus>) -> Outcome {
        Outcome(reply: m.reply, breaks: m.breaks, reason: m.reason)
    }

    func namespaceOutcome(_ m: Mutation<NamespaceChange>) -> Outcome {
        Outcome(reply: m.reply, breaks: m.breaks, reason: m.reason)
    }
}
