#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

extension Timespec {
    /// The wall clock now, with nanoseconds.
    public static func now() -> Timespec {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Timespec(seconds: Int64(ts.tv_sec), nanoseconds: UInt32(ts.tv_nsec))
    }
}
