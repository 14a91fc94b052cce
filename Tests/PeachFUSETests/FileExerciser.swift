import Foundation

/// A seeded random exerciser of one file, in the manner of fsx: writes, reads, mapped reads and
/// writes, truncates (down and up), fsync and close/reopen, each checked against an in-memory
/// model of what the file must hold. Debian has no fsx package; this is the stand-in for it.
struct FileExerciser {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// What a run does besides its operations, as fsx's flags do.
    struct Options {
        /// Mapped reads and writes (fsx without -R -W).
        var mapped = true
        /// After each operation, close and reopen the file with this chance (fsx -c N: 1 in N).
        var closeOneIn: UInt64? = nil
        /// After each write, invalidate the range's cached pages (fsx -f: msync MS_INVALIDATE).
        var invalidateAfterWrites = false
    }

    let path: String
    let maximumSize: Int
    let options: Options
    private var random: SplitMix64
    private var model: [UInt8] = []
    private var fd: Int32 = -1
    /// The last operations, printed with a failure.
    private var log: [String] = []

    init(path: String, seed: UInt64, maximumSize: Int = 256 * 1024, options: Options = Options()) {
        self.path = path
        self.maximumSize = maximumSize
        self.options = options
        random = SplitMix64(seed: seed)
    }

    /// Runs `count` operations; throws at the first difference from the model.
    mutating func run(_ count: Int) throws {
        fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw Failure(description: "open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        for number in 1...count {
            switch random.next() % 16 {
            case 0..<5: try write(number)
            case 5: options.mapped ? try mappedWrite(number) : try write(number)
            case 6..<10: try read(number)
            case 10..<12: options.mapped ? try mappedRead(number) : try read(number)
            case 12..<14: try truncate(number)
            case 14: try reopen(number)
            default: try sync(number)
            }
            if let oneIn = options.closeOneIn, random.next() % oneIn == 0 { try reopen(number) }
        }
        try reopen(count + 1)
        try read(count + 2, offset: 0, length: model.count)
    }

    private mutating func note(_ text: String) {
        log.append(text)
        if log.count > 12 { log.removeFirst() }
    }

    private func failure(_ number: Int, _ what: String) -> Failure {
        Failure(description: "operation \(number): \(what)\nlast operations:\n" + log.joined(separator: "\n"))
    }

    private mutating func write(_ number: Int) throws {
        let offset = Int(random.next() % UInt64(maximumSize))
        let length = 1 + Int(random.next() % UInt64(min(65536, maximumSize - offset)))
        let byte = UInt8(truncatingIfNeeded: number)
        let data = (0..<length).map { byte &+ UInt8(truncatingIfNeeded: $0 % 251) }
        note("\(number) write \(offset)+\(length)")
        guard pwrite(fd, data, length, off_t(offset)) == length else {
            throw failure(number, "pwrite: \(String(cString: strerror(errno)))")
        }
        if model.count < offset { model += [UInt8](repeating: 0, count: offset - model.count) }
        let overlap = min(model.count, offset + length)
        if overlap > offset { model.replaceSubrange(offset..<overlap, with: data[0..<(overlap - offset)]) }
        if offset + length > model.count { model += data[(model.count - offset)...] }
        try invalidateIfAsked(number, offset: offset, length: length)
    }

    /// A write through a shared mapping, as fsx's MAPWRITE: the file grows first if the range
    /// ends past it, and msync(MS_SYNC) sends the pages.
    private mutating func mappedWrite(_ number: Int) throws {
        let offset = Int(random.next() % UInt64(maximumSize))
        let length = 1 + Int(random.next() % UInt64(min(65536, maximumSize - offset)))
        let byte = UInt8(truncatingIfNeeded: number &* 7)
        let data = (0..<length).map { byte &+ UInt8(truncatingIfNeeded: $0 % 241) }
        note("\(number) mapwrite \(offset)+\(length)")
        if offset + length > model.count {
            guard ftruncate(fd, off_t(offset + length)) == 0 else { throw failure(number, "ftruncate: \(String(cString: strerror(errno)))") }
            model += [UInt8](repeating: 0, count: offset + length - model.count)
        }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = offset / page * page
        let mapped = length + (offset - start)
        guard let base = mmap(nil, mapped, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off_t(start)), base != MAP_FAILED else {
            throw failure(number, "mmap: \(String(cString: strerror(errno)))")
        }
        data.withUnsafeBytes { (base + (offset - start)).copyMemory(from: $0.baseAddress!, byteCount: length) }
        let synced = msync(base, mapped, MS_SYNC)
        munmap(base, mapped)
        guard synced == 0 else { throw failure(number, "msync: \(String(cString: strerror(errno)))") }
        model.replaceSubrange(offset..<(offset + length), with: data)
        try invalidateIfAsked(number, offset: offset, length: length)
    }

    /// fsx -f: the range's cached pages are dropped after a write (msync MS_INVALIDATE), so the
    /// next read of it asks the file system.
    private mutating func invalidateIfAsked(_ number: Int, offset: Int, length: Int) throws {
        guard options.invalidateAfterWrites else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = offset / page * page
        let mapped = length + (offset - start)
        guard let base = mmap(nil, mapped, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off_t(start)), base != MAP_FAILED else {
            throw failure(number, "mmap: \(String(cString: strerror(errno)))")
        }
        let invalidated = msync(base, mapped, MS_INVALIDATE)
        munmap(base, mapped)
        guard invalidated == 0 else { throw failure(number, "msync: \(String(cString: strerror(errno)))") }
    }

    private mutating func read(_ number: Int) throws {
        guard !model.isEmpty else { return try read(number, offset: 0, length: 16) }
        let offset = Int(random.next() % UInt64(model.count + 1024))
        let length = 1 + Int(random.next() % 65536)
        try read(number, offset: offset, length: length)
    }

    private mutating func read(_ number: Int, offset: Int, length: Int) throws {
        note("\(number) read \(offset)+\(length)")
        var buffer = [UInt8](repeating: 0xa5, count: max(length, 1))
        let n = pread(fd, &buffer, length, off_t(offset))
        guard n >= 0 else { throw failure(number, "pread: \(String(cString: strerror(errno)))") }
        let expected = offset < model.count ? Array(model[offset..<min(model.count, offset + length)]) : []
        guard Array(buffer[0..<n]) == expected else {
            let first = zip(buffer[0..<n], expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset
            throw failure(number, "read \(offset)+\(length) returned \(n) bytes, expected \(expected.count); "
                          + "first difference at \(first.map { String(offset + $0) } ?? "the end")")
        }
    }

    private mutating func mappedRead(_ number: Int) throws {
        guard !model.isEmpty else { return }
        let offset = Int(random.next() % UInt64(model.count))
        let length = 1 + Int(random.next() % UInt64(model.count - offset))
        // The same range through read(2) first: a short read there would make the kernel shrink
        // the file and the mapped access below die of SIGBUS, taking the test run with it.
        try read(number, offset: offset, length: length)
        note("\(number) mapread \(offset)+\(length)")
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = offset / page * page
        let mapped = length + (offset - start)
        guard let base = mmap(nil, mapped, PROT_READ, MAP_SHARED, fd, off_t(start)), base != MAP_FAILED else {
            throw failure(number, "mmap: \(String(cString: strerror(errno)))")
        }
        defer { munmap(base, mapped) }
        let bytes = Array(UnsafeRawBufferPointer(start: base + (offset - start), count: length))
        guard bytes == Array(model[offset..<(offset + length)]) else { throw failure(number, "mapped read \(offset)+\(length) differs") }
    }

    private mutating func truncate(_ number: Int) throws {
        let size = Int(random.next() % UInt64(maximumSize))
        note("\(number) truncate \(size)")
        guard ftruncate(fd, off_t(size)) == 0 else { throw failure(number, "ftruncate: \(String(cString: strerror(errno)))") }
        if size < model.count { model.removeLast(model.count - size) } else { model += [UInt8](repeating: 0, count: size - model.count) }
    }

    private mutating func reopen(_ number: Int) throws {
        note("\(number) close and open")
        guard close(fd) == 0 else { throw failure(number, "close: \(String(cString: strerror(errno)))") }
        fd = open(path, O_RDWR)
        guard fd >= 0 else { throw failure(number, "open: \(String(cString: strerror(errno)))") }
        var st = stat()
        guard fstat(fd, &st) == 0, Int(st.st_size) == model.count else {
            throw failure(number, "size after reopen \(st.st_size), expected \(model.count)")
        }
    }

    private mutating func sync(_ number: Int) throws {
        note("\(number) fsync")
        guard fsync(fd) == 0 else { throw failure(number, "fsync: \(String(cString: strerror(errno)))") }
    }
}

/// A small seeded generator (SplitMix64): the same seed gives the same operations.
struct SplitMix64 {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9e3779b97f4a7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58476d1ce4e5b9
        z = (z ^ (z >> 27)) &* 0x94d049bb133111eb
        return z ^ (z >> 31)
    }
}
