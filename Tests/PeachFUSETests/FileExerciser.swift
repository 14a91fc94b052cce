import Foundation

/// A seeded random exerciser of one file, in the manner of fsx: writes, reads, mapped reads,
/// truncates (down and up), fsync and close/reopen, each checked against an in-memory model of
/// what the file must hold. Debian has no fsx package; this is the stand-in for it.
struct FileExerciser {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    let path: String
    let maximumSize: Int
    private var random: SplitMix64
    private var model: [UInt8] = []
    private var fd: Int32 = -1
    /// The last operations, printed with a failure.
    private var log: [String] = []

    init(path: String, seed: UInt64, maximumSize: Int = 256 * 1024) {
        self.path = path
        self.maximumSize = maximumSize
        random = SplitMix64(seed: seed)
    }

    /// Runs `count` operations; throws at the first difference from the model.
    mutating func run(_ count: Int) throws {
        fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw Failure(description: "open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        for number in 1...count {
            switch random.next() % 16 {
            case 0..<6: try write(number)
            case 6..<10: try read(number)
            case 10..<12: try mappedRead(number)
            case 12..<14: try truncate(number)
            case 14: try reopen(number)
            default: try sync(number)
            }
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
