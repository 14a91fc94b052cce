import Foundation
import GRDB
import NIOCore
import NIOPosix
import PeachProtocol

/// StoreData: the announcement, the data frames written on the file I/O pool in order, and the
/// store once the last one is in. Event-loop only, like the rest of `ConnectionHandler`.
extension ConnectionHandler {
    func beginUpload(_ request: Request, id: UInt32, size: UInt64, requester: Requester) {
        // On failure the data frames are still read (and dropped), then the failure is answered.
        // The file is created by the first data frame's step: a small store costs one trip to the
        // file I/O pool (create, write, fsync, close) and one to the database's.
        let failure: StatusCode? = size <= server.store.limits.maximumFileSize ? nil : .fileTooLarge
        // The upload is written before the store's transaction: it may not take the disk's
        // reserve, nor may the uploads announced together (each holds its size from its check
        // until its data is on the disk). The disk is looked at off the event loop: before the
        // first data frame is written, on the file pool, or before a small store's transaction.
        // Nothing is held before that check.
        // A small store stays in memory and goes into the database whole: no file is made.
        let buffered = failure == nil && size <= UInt64(server.store.inlineMaximum)
            && bufferedUploadBytes + Int(size) <= Self.maximumBufferedUploadBytes
        var upload = Upload(request: request, size: size, path: buffered ? "" : server.store.newUploadPath(), requester: requester,
                            reserved: 0, failure: failure)
        if buffered {
            upload.buffered = []
            upload.buffered?.reserveCapacity(Int(size))
            bufferedUploadBytes += Int(size)
        }
        uploads[id] = upload
    }

    func receiveData(_ frame: Frame) throws {
        guard var upload = uploads[frame.id] else { throw ProtocolError.invalidValue("data for no upload") }
        upload.received += UInt64(frame.body.readableBytes)
        guard upload.received <= upload.size else { throw ProtocolError.invalidValue("more data than announced") }
        let last = frame.isLastChunk
        guard upload.failure == nil, !last || upload.received == upload.size else {
            uploads[frame.id] = upload
            if last { finishUpload(frame.id) }
            return
        }
        if upload.buffered != nil {
            upload.buffered?.append(contentsOf: frame.body.readableBytesView)
            uploads[frame.id] = upload
            if last { finishUpload(frame.id) }
            return
        }
        upload.busy = true
        uploads[frame.id] = upload
        let (fd, body, path) = (upload.fd, frame.body, upload.path)
        let sync = server.store.syncPolicy.syncsUploads
        let (reserve, size) = (server.store.reserve, upload.size)
        let needsRoom = fd < 0 && upload.reserved == 0
        onFileIOPool({ () -> (UploadFile.Step, UInt64) in
            // Before the file is made: room for it beside every upload held now.
            if needsRoom {
                guard (try? reserve.reserve(size)) != nil else { return (UploadFile.Step(fd: -1, succeeded: false, finished: false), 0) }
            }
            return (UploadFile.step(fd: fd, path: path, body: body, last: last, sync: sync), needsRoom ? size : 0)
        }) { handler, result in
            let (step, held) = result
            // Held from here until the data is on the disk; released at once if the upload went
            // (with the file the step made).
            guard handler.uploads[frame.id] != nil else {
                reserve.release(held)
                handler.server.fileIO.submit { _ in UploadFile.discard(step.fd, path: path) }
                return
            }
            handler.uploadStepDone(frame.id) { upload in
                upload.reserved += held
                upload.fd = step.fd
                upload.finished = step.finished
                if !step.succeeded { upload.failure = .noSpace }
            }
            if last { handler.finishUpload(frame.id) }
        }
    }

    func uploadStepDone(_ id: UInt32, _ update: (inout Upload) -> Void) {
        guard var upload = uploads[id] else { return }
        upload.busy = false
        update(&upload)
        guard !isClosed else {
            uploads[id] = nil
            return discard(upload)
        }
        uploads[id] = upload
        handleBacklog()
    }

    /// Closes and deletes an upload file that will not be stored.
    func discard(_ upload: Upload) {
        server.store.reserve.release(upload.reserved)
        if upload.buffered != nil { bufferedUploadBytes -= Int(upload.size) }
        guard upload.fd >= 0 || upload.finished else { return }
        let (fd, path) = (upload.fd, upload.path)
        server.fileIO.submit { _ in UploadFile.discard(fd, path: path) }
    }

    /// The last data frame is in: store the file, or answer why not.
    func finishUpload(_ id: UInt32) {
        guard var upload = uploads.removeValue(forKey: id) else { return }
        guard let context else { return discard(upload) }
        let opcode = Opcode.storeData.rawValue
        if upload.failure != nil || upload.received != upload.size {
            discard(upload)
            guard let failure = upload.failure else {
                return errorCaught(context: context, error: ProtocolError.invalidValue("less data than announced"))
            }
            return sendError(failure, id: id, opcode: opcode)
        }
        // A file's bytes are on the disk now, which its free space counts.
        server.store.reserve.release(upload.reserved)
        upload.reserved = 0
        let content: VolumeStore.UploadedContent
        // A small store's go to the database: room for them is checked and held while it runs.
        var roomNeeded: UInt64 = 0
        if let buffered = upload.buffered {
            bufferedUploadBytes -= Int(upload.size)
            content = .bytes(buffered)
            roomNeeded = upload.size
        } else {
            content = .file(upload.path)
        }
        let (request, requester, reserve, room) = (upload.request, upload.requester, server.store.reserve, roomNeeded)
        dispatch(id: id, opcode: opcode, isChange: true) { processor in
            try reserve.reserve(room)
            defer { reserve.release(room) }
            return try processor.process(request, for: requester, upload: content)
        }
    }

    /// Runs `work` on the file I/O pool, then `then` back on the event loop.
    func onFileIOPool<T: Sendable>(_ work: @escaping @Sendable () -> T, then: @escaping (ConnectionHandler, T) -> Void) {
        guard let context else { return }
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let continuation = NIOLoopBound(then, eventLoop: context.eventLoop)
        server.fileIO.runIfActive(eventLoop: context.eventLoop) { work() }.whenSuccess { value in
            continuation.value(loopBound.value, value)
        }
    }
}
