import Synchronization

/// Open files by the handle number the kernel holds (fuse_file_info.fh).
final class HandleTable<Value: Sendable>: Sendable {
    private let table = Mutex<(next: UInt64, open: [UInt64: Value])>((1, [:]))

    func insert(_ value: Value) -> UInt64 {
        table.withLock { t in
            let handle = t.next
            t.next += 1
            t.open[handle] = value
            return handle
        }
    }

    func get(_ handle: UInt64) throws -> Value {
        guard let value = table.withLock({ $0.open[handle] }) else { throw FileSystemError.badHandle }
        return value
    }

    func remove(_ handle: UInt64) -> Value? {
        table.withLock { $0.open.removeValue(forKey: handle) }
    }

    var all: [Value] { table.withLock { Array($0.open.values) } }
}
